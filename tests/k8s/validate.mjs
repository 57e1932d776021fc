// Schema check of rendered Kubernetes manifests with npm kubernetes-models (types, required fields, enums;
// it does not reject unknown fields: tests/k8s/check_manifests.py does). Usage:
//   NODE_PATH is not used by ESM: run from a directory whose node_modules holds kubernetes-models and yaml,
//   node validate.mjs --modules DIR/node_modules FILE.yaml...
// Prints one line per object; exits 1 when any object fails or has an apiVersion/kind the package lacks.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import path from "node:path";

const args = process.argv.slice(2);
const mi = args.indexOf("--modules");
if (mi < 0 || mi + 1 >= args.length) {
  console.error("usage: node validate.mjs --modules DIR/node_modules FILE...");
  process.exit(2);
}
const modules = args[mi + 1];
const files = args.filter((_, i) => i !== mi && i !== mi + 1);
const imp = (spec) => import(pathToFileURL(path.join(modules, spec)).href);
const YAML = await imp("yaml/dist/index.js");

let bad = 0;
let n = 0;
for (const file of files) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      console.error(`${file}: YAML error: ${doc.errors[0].message}`);
      bad++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    n++;
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    const gv = String(obj.apiVersion || "");
    let mod;
    try {
      mod = await imp(`kubernetes-models/${gv}/${obj.kind}.js`);
    } catch (e) {
      console.error(`${where}: no schema for apiVersion ${gv} kind ${obj.kind}`);
      bad++;
      continue;
    }
    const Model = mod[obj.kind];
    try {
      new Model(obj).validate();
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      bad++;
    }
  }
}
console.log(`kubernetes-models: ${n} objects, ${bad} failed`);
process.exit(bad ? 1 : 0);
