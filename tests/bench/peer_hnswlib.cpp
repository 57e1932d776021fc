// hnswlib peer for vecshard-bench.
//
// What it does: reads the base/query .npy files (float32, C order, 2-D) that
// vecshard-bench wrote, builds an hnswlib index (HierarchicalNSW, or
// BruteforceSearch for "Flat"), runs each efSearch setting (untimed warm-up,
// then a timed pass over all queries), writes the ids of each setting to
// DIR/hnswlib_<i>.npy (int32, (nq, k), -1 for missing) and prints one JSON line
// per setting on stdout.  Diagnostics go to stderr only.
//
// What it does not do: compute recall (the harness does, from the ids files),
// implement IVF/PQ (any non-HNSW, non-Flat factory is answered with an HNSW
// index at --hnsw-m / --ef-construction, labelled as such, so IVF rows still
// have hnswlib beside them), or accept npy files other than '<f4' 2-D C-order.
//
// Key design choice: hnswlib is used exactly as shipped (header-only, its own
// distance kernels); batches are split into contiguous slices over a small
// persistent thread pool (spin briefly, then block) rather than spawning
// threads per batch, so thread start-up cost is not charged to hnswlib.
// With --batch 1 each query is searched inline on the calling thread.
//
// The protocol pieces it shares with the FAISS peer (arguments, .npy I/O, the JSON line) are in
// peer_common.hpp.
//
// Build: g++ -std=c++17 -O3 -march=native -pthread peer_hnswlib.cpp

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

#define VS_PEER_NAME "peer_hnswlib"
#include "peer_common.hpp"

using namespace vs_peer;

namespace
{

// FAISS search-parameter names that this peer accepts and ignores (they have no
// hnswlib meaning); anything else that is not efSearch is an error.
bool is_foreign_param(const std::string &name)
{
    static const char *const known[] = {"nprobe",           "k_factor",  "k_factor_rf", "quantizer_efSearch",
                                        "quantizer_nprobe", "max_codes", "ht",          "parallel_mode"};
    for (const char *k : known)
        if (name == k)
            return true;
    return false;
}

// ----------------------------------------------------------- thread pool --

// Runs fn(t) for t in [0, n) with t == 0 on the calling thread.  Waiting sides
// (workers for the next job, the caller for the slices) spin for a bounded
// time (batches usually follow each other closely) and then block on a
// condition variable, so an oversubscribed machine is not made worse by
// long spinning.
class Pool
{
  public:
    explicit Pool(int n) : n_(n)
    {
        for (int t = 1; t < n_; ++t)
            workers_.emplace_back([this, t] { loop(t); });
    }
    ~Pool()
    {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
            gen_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto &w : workers_)
            w.join();
    }
    int size() const
    {
        return n_;
    }
    void run(const std::function<void(int)> &fn)
    {
        if (n_ == 1) {
            fn(0);
            return;
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = &fn;
            pending_.store(n_ - 1, std::memory_order_relaxed);
            gen_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        fn(0);
        if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
            std::unique_lock<std::mutex> lk(mu_);
            done_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
        }
    }

  private:
    static constexpr int kSpinMicros = 50;
    static void relax()
    {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        std::this_thread::yield();
#endif
    }
    // Poll pred for up to kSpinMicros; true as soon as it holds.
    template <class Pred> static bool spin_until(Pred pred)
    {
        const auto deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
        for (;;) {
            for (int i = 0; i < 32; ++i) {
                if (pred())
                    return true;
                relax();
            }
            if (Clock::now() >= deadline)
                return pred();
        }
    }
    void loop(int t)
    {
        uint64_t seen = 0;
        for (;;) {
            uint64_t g = seen;
            spin_until([&] { return (g = gen_.load(std::memory_order_acquire)) != seen; });
            if (g == seen) {
                std::unique_lock<std::mutex> lk(mu_);
                wake_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
                g = gen_.load(std::memory_order_acquire);
            }
            seen = g;
            const std::function<void(int)> *job;
            {
                // Taking the lock orders the read of stop_/job_ after the publisher's writes.
                std::lock_guard<std::mutex> lk(mu_);
                if (stop_)
                    return;
                job = job_;
            }
            (*job)(t);
            if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                std::lock_guard<std::mutex> lk(mu_);
                done_.notify_one();
            }
        }
    }

    int n_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable wake_, done_;
    std::atomic<uint64_t> gen_{0};
    std::atomic<int> pending_{0};
    const std::function<void(int)> *job_ = nullptr;
    bool stop_ = false;
};

// ----------------------------------------------------------------- misc --

void normalise_rows(Matrix &m)
{
    for (size_t i = 0; i < m.n; ++i) {
        float *r = m.row(i);
        double s = 0;
        for (size_t j = 0; j < m.d; ++j)
            s += double(r[j]) * r[j];
        if (s > 0) {
            const float inv = float(1.0 / std::sqrt(s));
            for (size_t j = 0; j < m.d; ++j)
                r[j] *= inv;
        }
    }
}

} // namespace

int main(int argc, char **argv)
{
    const Args a = parse_args(argc, argv,
                              "          --search 'efSearch=16,32' --threads N --batch B --out-dir DIR\n"
                              "          [--ef-construction 200] [--hnsw-m 32] [--build-threads N]\n"
                              "          [--index-file F]   (F exists: load it instead of building; else\n"
                              "                              build and save F)\n");
    const ParamList params = parse_search(a.search, "empty name");

    // Index kind from the factory string.
    const std::string fac = trim(a.index);
    if (fac.empty())
        die("--index is empty");
    bool flat = false;
    size_t M = a.hnsw_m;
    std::string index_name;
    if (fac == "Flat") {
        flat = true;
        index_name = "hnswlib:Flat";
    } else {
        bool hnsw_fac = false;
        if (fac.rfind("HNSW", 0) == 0) {
            size_t e = 4;
            while (e < fac.size() && fac[e] >= '0' && fac[e] <= '9')
                ++e;
            const std::string rest = fac.substr(e);
            if (e > 4 && (rest.empty() || rest == ",Flat")) {
                M = parse_pos("HNSW M", fac.substr(4, e - 4));
                hnsw_fac = true;
            }
        }
        if (!hnsw_fac)
            log_msg("factory '" + fac + "' has no hnswlib equivalent; using HNSW" + std::to_string(M) +
                    " (--hnsw-m) with efConstruction=" + std::to_string(a.ef_construction));
        index_name = "hnswlib:HNSW" + std::to_string(M);
    }

    // Search settings: only efSearch means something to hnswlib.
    // 'ef_search' is vecshard's alternative spelling; the output keeps the name as given.
    auto is_ef = [](const std::string &n) { return n == "efSearch" || n == "ef_search"; };
    std::vector<std::string> ef_values;
    std::string ef_name = "efSearch";
    for (const auto &p : params) {
        if (is_ef(p.first)) {
            if (!flat) {
                if (!ef_values.empty())
                    die("both efSearch and ef_search given");
                for (const auto &v : p.second)
                    parse_pos(p.first, v);
                ef_values = p.second;
                ef_name = p.first;
            }
        } else if (!is_foreign_param(p.first)) {
            die("unknown search parameter '" + p.first + "' (hnswlib understands efSearch)");
        }
    }
    if (flat) {
        if (!params.empty())
            log_msg("Flat (brute force): search parameters ignored; one run");
    } else {
        for (const auto &p : params)
            if (!is_ef(p.first))
                log_msg("ignoring '" + p.first + "' (not applicable to HNSW)");
        if (ef_values.empty()) {
            ef_values = {"10", "20", "40", "80", "120", "200", "400", "800"};
            log_msg("--search has no efSearch; using the default sweep efSearch=10,20,40,80,120,200,400,800");
        }
    }

    Matrix xb = read_npy_f32(a.base, "base");
    Matrix xq = read_npy_f32(a.queries, "queries");
    if (xq.d != xb.d)
        die("dimension mismatch: base d=" + std::to_string(xb.d) + ", queries d=" + std::to_string(xq.d));
    if (xb.n > size_t(INT32_MAX))
        die("too many base rows for int32 ids");
    const size_t nb = xb.n, nq = xq.n, d = xb.d, k = a.k;
    make_out_dir(a.out_dir);

    const bool cosine = a.metric == "cosine";
    // Cosine: queries are normalised here, before any timing starts; the base is
    // normalised inside the timed build (it is part of preparing the index).
    if (cosine)
        normalise_rows(xq);

    std::unique_ptr<hnswlib::SpaceInterface<float>> space;
    if (a.metric == "l2")
        space.reset(new hnswlib::L2Space(d));
    else
        space.reset(new hnswlib::InnerProductSpace(d)); // distance = 1 - ip; only ids are reported

    Pool pool(a.threads);
    Pool build_pool(a.build_threads);
    const bool load = !flat && file_bytes(a.index_file) > 0;
    log_msg((load ? "loading " + a.index_file + ": " : "building ") + index_name + " on " +
            std::to_string(nb) + " x " + std::to_string(d) + " (" + a.metric + ", " +
            std::to_string(a.build_threads) + " threads)");

    std::unique_ptr<hnswlib::AlgorithmInterface<float>> alg;
    hnswlib::HierarchicalNSW<float> *hnsw = nullptr;
    const auto b0 = Clock::now();
    if (load) {
        try {
            hnsw = new hnswlib::HierarchicalNSW<float>(space.get(), a.index_file, false, nb);
            alg.reset(hnsw);
        } catch (const std::exception &ex) {
            die("cannot load --index-file '" + a.index_file + "': " + ex.what(), 1);
        }
        // what the file can tell (hnswlib keeps efConstruction as max(efConstruction, M)); the metric it
        // cannot: the caller names files by metric (run_speed.sh)
        const size_t vec_bytes = hnsw->label_offset_ - hnsw->offsetData_;
        if (hnsw->cur_element_count != nb || hnsw->M_ != M || vec_bytes != space->get_data_size() ||
            hnsw->ef_construction_ != std::max<size_t>(a.ef_construction, M))
            die("--index-file '" + a.index_file + "' holds another index (" +
                    std::to_string(hnsw->cur_element_count) + " vectors of " + std::to_string(vec_bytes / 4) +
                    " dimensions, M " + std::to_string(hnsw->M_) + ", efConstruction " +
                    std::to_string(hnsw->ef_construction_) + "): delete it",
                2);
    } else {
        try {
            if (cosine)
                normalise_rows(xb);
            if (flat) {
                alg.reset(new hnswlib::BruteforceSearch<float>(space.get(), nb));
            } else {
                hnsw = new hnswlib::HierarchicalNSW<float>(space.get(), nb, M, a.ef_construction);
                alg.reset(hnsw);
            }
            // First point alone, then the rest concurrently (hnswlib's addPoint is
            // thread-safe); labels are row indices.
            alg->addPoint(xb.row(0), 0);
            std::atomic<size_t> next{1};
            std::mutex err_mu;
            std::string err;
            build_pool.run([&](int) {
                const size_t chunk = 64;
                for (;;) {
                    size_t s = next.fetch_add(chunk);
                    if (s >= nb)
                        break;
                    size_t e = std::min(nb, s + chunk);
                    try {
                        for (size_t i = s; i < e; ++i)
                            alg->addPoint(xb.row(i), hnswlib::labeltype(i));
                    } catch (const std::exception &ex) {
                        std::lock_guard<std::mutex> lk(err_mu);
                        err = ex.what();
                        next.store(nb);
                        break;
                    }
                }
            });
            if (!err.empty())
                throw std::runtime_error(err);
        } catch (const std::exception &ex) {
            die(std::string("index build failed: ") + ex.what(), 1);
        }
    }
    const double build_s = std::chrono::duration<double>(Clock::now() - b0).count();
    std::vector<float>().swap(xb.v); // hnswlib holds its own copy

    long long index_bytes = 0;
    if (load) {
        index_bytes = file_bytes(a.index_file);
    } else {
        // a cache is written under another name and renamed: a run killed meanwhile leaves no partial index
        const bool keep = !a.index_file.empty() && !flat;
        const std::string p = keep ? a.index_file + ".tmp" : a.out_dir + "/hnswlib.index";
        try {
            alg->saveIndex(p);
        } catch (const std::exception &ex) {
            die("saveIndex failed: " + std::string(ex.what()), 1);
        }
        struct stat st;
        if (stat(p.c_str(), &st) != 0)
            die("cannot stat '" + p + "' after saveIndex", 1);
        index_bytes = (long long)st.st_size;
        if (!keep)
            std::remove(p.c_str());
        else if (std::rename(p.c_str(), a.index_file.c_str()) != 0)
            die("cannot rename '" + p + "' to '" + a.index_file + "': " + std::strerror(errno), 1);
    }
    log_built(build_s, index_bytes, load);

    // One search call for the query rows [s, e): inline when one thread or one
    // query, otherwise contiguous slices over the pool.
    const size_t kk = std::min(k, nb); // BruteforceSearch reads past its data when k > n
    auto search_rows = [&](size_t s, size_t e, int32_t *out) {
        for (size_t i = s; i < e; ++i) {
            auto res = alg->searchKnn(xq.row(i), kk);
            int32_t *o = out + (i - s) * k;
            std::fill(o, o + k, int32_t(-1));
            for (size_t j = res.size(); j > 0; --j) { // max-heap: farthest first
                o[j - 1] = int32_t(res.top().second);
                res.pop();
            }
        }
    };
    auto search_call = [&](size_t s, size_t e, int32_t *out) {
        const size_t m = e - s;
        if (pool.size() == 1 || m == 1) {
            search_rows(s, e, out);
            return;
        }
        const size_t nt = size_t(pool.size());
        pool.run([&](int t) {
            const size_t a0 = s + m * size_t(t) / nt, a1 = s + m * (size_t(t) + 1) / nt;
            if (a0 < a1)
                search_rows(a0, a1, out + (a0 - s) * k);
        });
    };

    const size_t nsettings = flat ? 1 : ef_values.size();
    const size_t nwarm = std::min<size_t>(nq, 100);
    std::vector<int32_t> ids(nq * k), scratch(nwarm * k);
    for (size_t si = 0; si < nsettings; ++si) {
        std::string pstr;
        if (!flat) {
            hnsw->setEf(parse_pos("efSearch", ef_values[si]));
            pstr = ef_name + "=" + ef_values[si];
        }
        try {
            for (size_t s = 0; s < nwarm; s += a.batch) // untimed warm-up
                search_call(s, std::min(nwarm, s + a.batch), scratch.data() + s * k);

            std::vector<double> lat;
            lat.reserve(nq / a.batch + 1);
            const auto w0 = Clock::now();
            for (size_t s = 0; s < nq; s += a.batch) {
                const size_t e = std::min(nq, s + a.batch);
                const auto t0 = Clock::now();
                search_call(s, e, ids.data() + s * k);
                const auto t1 = Clock::now();
                lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            }
            const double wall = std::chrono::duration<double>(Clock::now() - w0).count();

            report_setting(a, "hnswlib", si, nsettings, index_name, pstr, ids, wall, lat, build_s,
                           index_bytes);
        } catch (const std::exception &ex) {
            die(std::string("search failed: ") + ex.what(), 1);
        }
    }
    return 0;
}
