# data.sh: sourced by tests/bench/run_*.sh. Needs $bin (vecshard tools) and $out (output directory).
# fashion_data: sets base, queries, gt for Fashion-MNIST (ground truth made once into $out).
# synthetic_data DIR: sets syn, making the 1M x 128 synthetic set and its ground truth in DIR if absent.
# fio_random_reads FILE: fio's random 4 KiB O_DIRECT read IOPS of FILE (io_uring) at queue depth 1 (1 job)
#   and 32 (2 jobs, as the disk benchmarks' 2 threads), 8 s each, with fio's CPU line.
# hard_synth_args: vecshard-synth arguments for data as hard as real 128-d descriptors (SIFT of photographs):
#   at 1M the same nprobe for IVF1024,Flat at recall@10 0.95 and an MLE local intrinsic dimensionality
#   within 5 % (tests/bench/run_hardness.sh; docs/benchmarks.md). The defaults make an easier set.
hard_synth_args="--latent 128 --sigma 0.7 --noise 0.3"
fashion_data() {
    local d=/usr/share/datasets/fashion-mnist
    base=$d/train-images-idx3-ubyte.gz
    queries=$d/t10k-images-idx3-ubyte.gz
    gt=$out/fashion-gt100.ivecs
    [ -s "$gt" ] || "$bin/vecshard-gt" --base "$base" --queries "$queries" --k 100 --out "$gt"
}

synthetic_data() {
    syn=$1
    mkdir -p "$syn"
    [ -s "$syn/base.fvecs" ] || "$bin/vecshard-synth" --out "$syn" --n 1000000 --nq 10000 --d 128 --seed 42
    [ -s "$syn/gt100.ivecs" ] || "$bin/vecshard-gt" --base "$syn/base.fvecs" --queries "$syn/queries.fvecs" \
        --k 100 --out "$syn/gt100.ivecs"
}

fio_random_reads() {
    local qd jobs
    for qd in 1 32; do
        jobs=$([ "$qd" = 1 ] && echo 1 || echo 2)
        fio --name=rr --filename="$1" --readonly --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
            --iodepth="$qd" --numjobs="$jobs" --runtime=8 --time_based --group_reporting 2>/dev/null |
            awk -v qd="$qd" -v jobs="$jobs" '/IOPS=/ {sub(",", "", $2); print "fio random 4 KiB reads, queue depth " qd " x " jobs " job(s): " $2} /cpu +:/ {print "  fio " $0}'
    done
}
