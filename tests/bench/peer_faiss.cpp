// FAISS peer for vecshard-bench, compiled: the same protocol as peer_faiss.py, timed from a C++ loop.
//
// What it does: reads the base/query .npy files (float32, C order, 2-D) that vecshard-bench wrote,
// builds one FAISS index from a factory string (faiss::index_factory with the metric; train + add timed
// together as build_s), then for every setting of the --search sweep runs an untimed warm-up and a timed
// pass over all queries (--batch 1: one query per search() call, the ann-benchmarks protocol; --batch B:
// B queries per call), writes the ids to DIR/faiss_<i>.npy (int32, (nq, k), -1 for missing) and prints
// one JSON line per setting on stdout. Diagnostics go to stderr only.
//
// What it does not do: compute recall (the harness does, from the ids files, identically for every
// peer), tune anything beyond the parameters it is given, or accept npy files other than '<f4' 2-D
// C-order (the harness writes nothing else). FAISS is not part of vecshard: this file is built only when
// tests/bench/peers.cmake finds an installed FAISS (VS_FAISS_ROOT, then the system's libfaiss-dev).
//
// Key design choice: the same semantics as the script, so the only difference between `--peers faiss`
// and `--peers faiss-py` is the loop that calls search(): parameters go through
// faiss::ParameterSpace::set_index_parameter (FAISS's own names: nprobe, efSearch, k_factor,
// quantizer_efSearch, ...; 'k_factor' falls back to 'k_factor_rf', IndexRefine's name, exactly as the
// script does), names are validated on an untrained copy before the build, index_bytes is the size of
// faiss::write_index's serialisation (what the script's faiss.serialize_index measures), and OpenBLAS is
// single-threaded unless OPENBLAS_NUM_THREADS is set, so --threads means FAISS's OpenMP threads only.
// One extension the script cannot have: 'qb' and 'centered' set the query quantisation of RaBitQ
// indexes (FAISS >= 1.11), which ParameterSpace does not know.
//
// Compiles against FAISS 1.7.3 (Debian's libfaiss-dev) up to 1.15; API differences are handled by
// __has_include and member detection, not by version numbers. The protocol pieces it shares with the
// hnswlib peer (arguments, .npy I/O, the JSON line) are in peer_common.hpp.

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/utils.h>
#if __has_include(<faiss/IndexRaBitQ.h>)
#include <faiss/IndexIVFRaBitQ.h>
#include <faiss/IndexRaBitQ.h>
#define VS_PEER_RABITQ 1
#endif
#if __has_include(<faiss/IndexRaBitQFastScan.h>)
#include <faiss/IndexIVFRaBitQFastScan.h>
#include <faiss/IndexRaBitQFastScan.h>
#define VS_PEER_RABITQ_FS 1
#endif

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#define VS_PEER_NAME "peer_faiss"
#include "peer_common.hpp"

using namespace vs_peer;

namespace
{

// FAISS exceptions read "Error in <function> at <file>:<line>: <message>"; keep the message, as the
// script keeps the informative line of the Python trace.
std::string faiss_msg(const std::exception &e)
{
    const std::string w = e.what();
    if (w.rfind("Error in ", 0) == 0) {
        const size_t at = w.find(" at ");
        if (at != std::string::npos) {
            size_t p = w.find(": ", at + 4);
            if (p != std::string::npos)
                return w.substr(p + 2);
        }
    }
    return w;
}

// ------------------------------------------------------------- search sweep --

using Setting = std::vector<std::pair<std::string, std::string>>;

// Cartesian product, first parameter outermost; one empty setting if none.
std::vector<Setting> settings_of(const ParamList &params)
{
    std::vector<Setting> out(1);
    for (const auto &p : params) {
        std::vector<Setting> next;
        for (const Setting &s : out)
            for (const std::string &v : p.second) {
                Setting t = s;
                t.emplace_back(p.first, v);
                next.push_back(std::move(t));
            }
        out = std::move(next);
    }
    return out;
}

// ------------------------------------------------------- index structure --

// Calls fn on index and on every sub-index the script's set_ef_construction walks: an IVF's
// quantizer, IndexRefine's base_index, the index inside IndexPreTransform and IndexIDMap.
template <class Fn> void walk(faiss::Index *index, Fn &&fn)
{
    if (index == nullptr)
        return;
    fn(index);
    if (auto *ivf = dynamic_cast<faiss::IndexIVF *>(index))
        walk(ivf->quantizer, fn);
    if (auto *rf = dynamic_cast<faiss::IndexRefine *>(index))
        walk(rf->base_index, fn);
    if (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(index))
        walk(pt->index, fn);
    if (auto *im = dynamic_cast<faiss::IndexIDMap *>(index))
        walk(im->index, fn);
}

// efConstruction on every HNSW graph reachable from index (before add); false if there is none.
bool set_ef_construction(faiss::Index *index, int efc)
{
    bool found = false;
    walk(index, [&](faiss::Index *ix) {
        if (auto *h = dynamic_cast<faiss::IndexHNSW *>(ix)) {
            h->hnsw.efConstruction = efc;
            found = true;
        }
    });
    return found;
}

// RaBitQ's query quantisation: 'qb' (bits per query coordinate, 0 = float queries where the index
// allows it) and 'centered' (0/1: zero-centred query quantiser) are members of the RaBitQ indexes,
// not ParameterSpace names. Which index type has which member changed between FAISS releases, so it
// is detected, not assumed.
template <class T, class = void> struct has_qb : std::false_type {
};
template <class T> struct has_qb<T, std::void_t<decltype(std::declval<T &>().qb)>> : std::true_type {
};
template <class T, class = void> struct has_centered : std::false_type {
};
template <class T>
struct has_centered<T, std::void_t<decltype(std::declval<T &>().centered)>> : std::true_type {
};

template <class T> bool set_rabitq_member(faiss::Index *ix, const std::string &name, double val)
{
    T *r = dynamic_cast<T *>(ix);
    if (r == nullptr)
        return false;
    if constexpr (has_qb<T>::value) {
        if (name == "qb") {
            r->qb = uint8_t(val);
            return true;
        }
    }
    if constexpr (has_centered<T>::value) {
        if (name == "centered") {
            r->centered = val != 0;
            return true;
        }
    }
    return false;
}

// True if some RaBitQ index reachable from index took name=val.
bool set_rabitq_param(faiss::Index *index, const std::string &name, double val)
{
    if (name != "qb" && name != "centered")
        return false;
    if (name == "qb" && (val < 0 || val > 8 || val != std::floor(val)))
        throw std::invalid_argument("qb must be an integer in 0..8");
    if (name == "centered" && val != 0 && val != 1)
        throw std::invalid_argument("centered must be 0 or 1");
    bool set = false;
    walk(index, [&](faiss::Index *ix) {
#ifdef VS_PEER_RABITQ
        set |= set_rabitq_member<faiss::IndexRaBitQ>(ix, name, val);
        set |= set_rabitq_member<faiss::IndexIVFRaBitQ>(ix, name, val);
#endif
#ifdef VS_PEER_RABITQ_FS
        // FAISS throws for qb=0 inside an OpenMP region of the fast-scan search, which aborts.
        if (name == "qb" && val == 0 &&
            (dynamic_cast<faiss::IndexRaBitQFastScan *>(ix) != nullptr ||
             dynamic_cast<faiss::IndexIVFRaBitQFastScan *>(ix) != nullptr))
            throw std::invalid_argument("qb=0 (float queries) is not supported by RaBitQ fast-scan indexes");
        set |= set_rabitq_member<faiss::IndexRaBitQFastScan>(ix, name, val);
        set |= set_rabitq_member<faiss::IndexIVFRaBitQFastScan>(ix, name, val);
#endif
        (void)ix;
    });
    return set;
}

// One search parameter, as the script sets it: 'ef_search' is vecshard's spelling of efSearch, and
// 'k_factor' that FAISS refuses is retried as 'k_factor_rf' (IndexRefine's name; 'k_factor' is
// IndexIVFPQR's). Throws what FAISS throws.
void set_param(const faiss::ParameterSpace &ps, faiss::Index *index, std::string name, double val)
{
    if (name == "ef_search")
        name = "efSearch";
    try {
        ps.set_index_parameter(index, name, val);
    } catch (const std::exception &) {
        if (name == "k_factor") {
            ps.set_index_parameter(index, "k_factor_rf", val);
            return;
        }
        if (set_rabitq_param(index, name, val))
            return;
        throw;
    }
}

// --------------------------------------------------------------- misc --

// Unit rows, with FAISS's own routine (the script's faiss.normalize_L2), OpenMP-parallel.
void normalise_rows(Matrix &m)
{
    faiss::fvec_renorm_L2(m.d, m.n, m.v.data());
}

// OpenBLAS single-threaded unless the caller chose (the script's os.environ.setdefault): its pthread
// workers busy-wait and fight FAISS's spinning OpenMP team, and --threads 1 must mean one thread.
// OpenBLAS reads OPENBLAS_NUM_THREADS when it is loaded, before main, so the peer sets it and executes
// itself again (same pid and descriptors; nothing is timed yet). Only if that fails is the count set
// through the API of whichever OpenBLAS is loaded.
std::string blas_single_thread(char **argv)
{
    const char *env = std::getenv("OPENBLAS_NUM_THREADS");
    if (env != nullptr)
        return std::string("OPENBLAS_NUM_THREADS=") + env;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    execv("/proc/self/exe", argv);
    using set_fn = void (*)(int);
    void *sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    if (sym == nullptr)
        return "cannot re-execute and no openblas_set_num_threads: BLAS threads left as they are";
    reinterpret_cast<set_fn>(sym)(1);
    return "openblas_set_num_threads(1)";
}

} // namespace

int main(int argc, char **argv)
{
    const std::string blas = blas_single_thread(argv);
    const Args a =
        parse_args(argc, argv,
                   "          --search 'nprobe=1,2;k_factor=4' --threads N --batch B --out-dir DIR\n"
                   "          [--ef-construction 200] [--build-threads N] [--hnsw-m M (unused)]\n"
                   "          [--index-file F]   (F exists: load it instead of building; else build\n"
                   "                              and save F)\n");
    const ParamList params = parse_search(a.search);
    const std::vector<Setting> settings = settings_of(params);
    const std::string fac = trim(a.index);
    if (fac.empty())
        die("--index is empty");

    // Every build carries its version in the label, Debian's 1.7.3 too: "faiss:" stays the script's
    // (Python-loop) rows, so old and new figures cannot be mistaken for each other.
    const std::string version = std::to_string(FAISS_VERSION_MAJOR) + "." +
                                std::to_string(FAISS_VERSION_MINOR) + "." +
                                std::to_string(FAISS_VERSION_PATCH);
    const std::string label = "faiss-" + version + ":";
    log_msg("faiss " + version + " (" + faiss::get_compile_options() + "), C++ loop, " + blas);

    Matrix xb = read_npy_f32(a.base, "base");
    Matrix xq = read_npy_f32(a.queries, "queries");
    if (xq.d != xb.d)
        die("dimension mismatch: base d=" + std::to_string(xb.d) + ", queries d=" + std::to_string(xq.d));
    if (xb.n > size_t(INT32_MAX))
        die("base has " + std::to_string(xb.n) + " rows; int32 ids cannot represent them");
    if (xb.d > size_t(INT32_MAX))
        die("dimension too large");
    const size_t nb = xb.n, nq = xq.n, k = a.k;
    const int d = int(xb.d);
    make_out_dir(a.out_dir);

    const faiss::MetricType metric = a.metric == "l2" ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
    omp_set_num_threads(a.threads);

    // Fail fast on an unknown factory string or parameter name, before the build.
    const faiss::ParameterSpace ps;
    try {
        std::unique_ptr<faiss::Index> probe(faiss::index_factory(d, fac.c_str(), metric));
        for (const auto &p : params) {
            try {
                set_param(ps, probe.get(), p.first, std::strtod(p.second[0].c_str(), nullptr));
            } catch (const std::exception &e) {
                die("search parameter '" + p.first + "' is not supported by index '" + fac +
                    "': " + faiss_msg(e));
            }
        }
    } catch (const std::exception &e) {
        die("unknown/invalid faiss factory '" + fac + "': " + faiss_msg(e));
    }

    // Cosine: queries are normalised here, before any timing starts; the base inside the timed build
    // (it is part of preparing the index).
    const bool cosine = a.metric == "cosine";
    if (cosine)
        normalise_rows(xq);

    omp_set_num_threads(a.build_threads);
    const bool load = file_bytes(a.index_file) > 0;
    log_msg((load ? "loading " + a.index_file + ": " : "building ") + fac + " on " + std::to_string(nb) +
            " x " + std::to_string(d) + " (" + a.metric + ", " + std::to_string(a.build_threads) +
            " threads)");
    std::unique_ptr<faiss::Index> index;
    const auto b0 = Clock::now();
    if (load) {
        try {
            index.reset(faiss::read_index(a.index_file.c_str()));
        } catch (const std::exception &e) {
            die("cannot load --index-file '" + a.index_file + "': " + faiss_msg(e), 1);
        }
        if (index->ntotal != faiss::idx_t(nb) || index->d != d || index->metric_type != metric)
            die("--index-file '" + a.index_file + "' holds another index (" + std::to_string(index->ntotal) +
                    " vectors of " + std::to_string(index->d) + " dimensions, " +
                    (index->metric_type == faiss::METRIC_L2 ? "l2" : "inner product") +
                    "; the factory string and ip against cosine cannot be checked: name files by them): "
                    "delete it",
                2);
    } else {
        try {
            if (cosine)
                normalise_rows(xb);
            index.reset(faiss::index_factory(d, fac.c_str(), metric));
            set_ef_construction(index.get(), int(a.ef_construction));
            if (!index->is_trained)
                index->train(int64_t(nb), xb.v.data());
            index->add(int64_t(nb), xb.v.data());
        } catch (const std::exception &e) {
            die("index build failed: " + faiss_msg(e), 1);
        }
    }
    const double build_s = std::chrono::duration<double>(Clock::now() - b0).count();
    std::vector<float>().swap(xb.v); // the index holds what it needs

    long long index_bytes = 0;
    try {
        if (load) {
            index_bytes = file_bytes(a.index_file);
        } else if (!a.index_file.empty()) { // under another name, renamed: never a partial index file
            const std::string tmp = a.index_file + ".tmp";
            faiss::write_index(index.get(), tmp.c_str());
            if (std::rename(tmp.c_str(), a.index_file.c_str()) != 0)
                die("cannot rename '" + tmp + "' to '" + a.index_file + "': " + std::strerror(errno), 1);
            index_bytes = file_bytes(a.index_file);
        } else {
            faiss::VectorIOWriter w;
            faiss::write_index(index.get(), &w);
            index_bytes = (long long)w.data.size();
        }
    } catch (const std::exception &e) {
        die("write_index failed: " + faiss_msg(e), 1);
    }
    omp_set_num_threads(a.threads);
    log_built(build_s, index_bytes, load);

    // One search() call per chunk of `batch` queries, results written in place: no allocation and no
    // copy inside the timed loop.
    using idx_t = int64_t; // faiss::idx_t from 1.7.4 on, faiss::Index::idx_t before
    const size_t nwarm = std::min<size_t>(nq, 100);
    std::vector<float> dist(nq * k);
    std::vector<idx_t> labels(nq * k);
    std::vector<int32_t> ids(nq * k);
    auto run_queries = [&](size_t n, std::vector<double> *lat_us) {
        for (size_t s = 0; s < n; s += a.batch) {
            const size_t m = std::min(n, s + a.batch) - s;
            const auto t0 = Clock::now();
            index->search(idx_t(m), xq.row(s), idx_t(k), dist.data() + s * k, labels.data() + s * k);
            const auto t1 = Clock::now();
            if (lat_us != nullptr)
                lat_us->push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        }
    };

    for (size_t si = 0; si < settings.size(); ++si) {
        const Setting &setting = settings[si];
        std::string pstr;
        for (const auto &nv : setting) {
            try {
                set_param(ps, index.get(), nv.first, std::strtod(nv.second.c_str(), nullptr));
            } catch (const std::exception &e) {
                die("cannot set " + nv.first + "=" + nv.second + " on '" + fac + "': " + faiss_msg(e));
            }
            pstr += (pstr.empty() ? "" : ",") + nv.first + "=" + nv.second;
        }
        std::vector<double> lat;
        lat.reserve(nq / a.batch + 1);
        double wall = 0;
        try {
            run_queries(nwarm, nullptr); // untimed warm-up
            std::fill(labels.begin(), labels.end(), idx_t(-1));
            const auto w0 = Clock::now();
            run_queries(nq, &lat);
            wall = std::chrono::duration<double>(Clock::now() - w0).count();
        } catch (const std::exception &e) {
            die("search failed [" + pstr + "]: " + faiss_msg(e), 1);
        }
        for (size_t i = 0; i < nq * k; ++i)
            ids[i] = labels[i] < 0 ? -1 : int32_t(labels[i]);

        report_setting(a, "faiss", si, settings.size(), label + a.index, pstr, ids, wall, lat, build_s,
                       index_bytes);
    }
    return 0;
}
