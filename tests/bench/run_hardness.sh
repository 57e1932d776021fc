#!/usr/bin/env bash
# Is the synthetic benchmark data as hard as real data? (issue 14, goal 2; a benchmark, not in tests/run.sh)
# Makes a real 128-d descriptor set (SIFT descriptors of the photographs and wallpapers Debian ships, see
# tests/bench/sift_debian.py) and the synthetic set of run_scale.sh at the same size, then prints for each,
# side by side: the nprobe that IVF1024,Flat needs for recall@10 >= 0.95 (the recall at every nprobe of the
# sweep is in OUTDIR/*.jsonl) and the MLE local intrinsic dimensionality at k = 100 (tests/bench/lid.py).
# Two synthetic sets: vecshard-synth's defaults, and hard_synth_args of data.sh (what run_scale.sh uses).
# Results already in OUTDIR are reused (delete OUTDIR/*.jsonl to measure again).
# Usage: tests/bench/run_hardness.sh [OUTDIR] [N]     (default build/bench/hardness, 1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/hardness}
n=${2:-1000000}
mkdir -p "$out"
./deploy/local/install-deps.sh
# the photographs: KDE/MATE/GNOME/UKUI/Lomiri/sway wallpapers, Tux Paint's photo stamps, Stellarium's
# landscapes and nebulae, KStars' images, OpenCV's documentation images
pkgs="python3-opencv plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers gnome-backgrounds
      lomiri-wallpapers-20.04 sway-backgrounds desktop-base tuxpaint-stamps-default stellarium-data
      kstars-data opencv-doc"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    echo "installing: $missing"
    sudo_=; [ "$(id -u)" -eq 0 ] || sudo_=sudo
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }

real=$out/sift
if [ ! -s "$real/queries.fvecs" ]; then
    /usr/bin/python3 tests/bench/sift_debian.py --out "$real" --n "$n" --nq 10000 \
        /usr/share/wallpapers /usr/share/backgrounds /usr/share/tuxpaint/stamps /usr/share/stellarium \
        /usr/share/kstars /usr/share/doc/opencv-doc 2>&1 | grep -v "libpng warning" | tee -a "$res"
fi
nreal=$(( $(stat -c %s "$real/base.fvecs") / (4 * 129) ))
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
# the synthetic sets: vecshard-synth's defaults and hard_synth_args (data.sh; run_scale.sh uses it)
for set in syn-default syn-hard; do
    if [ ! -s "$out/$set/queries.fvecs" ]; then
        mkdir -p "$out/$set"
        args=; [ $set = syn-hard ] && args=$hard_synth_args
        # shellcheck disable=SC2086
        "$bin/vecshard-synth" --out "$out/$set" --n "$nreal" --nq 10000 --d 128 --seed 42 --quiet $args
    fi
done
log "sets: real $nreal x 128 (SIFT of Debian's photographs); syn-default and syn-hard: vecshard-synth at $nreal x 128, defaults and $hard_synth_args"

# one line per set: the smallest nprobe of the sweep with recall@10 >= 0.95, and the LID
for set in real syn-default syn-hard; do
    dir=$out/$set
    [ $set = real ] && dir=$real
    [ -s "$dir/gt100.ivecs" ] || "$bin/vecshard-gt" --base "$dir/base.fvecs" --queries "$dir/queries.fvecs" \
        --k 100 --out "$dir/gt100.ivecs"
    [ -s "$out/$set.jsonl" ] || "$bin/vecshard-bench" --base "$dir/base.fvecs" --queries "$dir/queries.fvecs" --gt "$dir/gt100.ivecs" \
        --index IVF1024,Flat --search "nprobe=1,2,3,4,5,6,8,10,12,16,20,24,32,40,48,64,96,128" \
        --threads "$(nproc)" --train-size 262144 --quiet --dataset "$set" > "$out/$set.jsonl"
    lid=$(/usr/bin/python3 tests/bench/lid.py "$dir/base.fvecs" "$dir/queries.fvecs" "$dir/gt100.ivecs" \
        --k 100 --nq 2000)
    /usr/bin/python3 - "$out/$set.jsonl" "$set" "$lid" <<'EOF' | tee -a "$res"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
lid = json.loads(sys.argv[3])
need = [r for r in rows if r['recall_at_10'] >= 0.95]
np_ = need[0]['params'] if need else 'none up to nprobe=128'
curve = ' '.join('%s:%.3f' % (r['params'].split('=')[1], r['recall_at_10']) for r in rows)
print('%-11s IVF1024,Flat recall@10 >= 0.95 at %s; LID(k=100) median %.1f mean %.1f; recall by nprobe %s' %
      (sys.argv[2], np_, lid['lid_median'], lid['lid_mean'], curve))
EOF
done
