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
// Build: g++ -std=c++17 -O3 -march=native -pthread peer_hnswlib.cpp

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace {

[[noreturn]] void die(const std::string &msg, int code = 2) {
    std::fprintf(stderr, "peer_hnswlib: error: %s\n", msg.c_str());
    std::exit(code);
}

void log_msg(const std::string &msg) {
    std::fprintf(stderr, "peer_hnswlib: %s\n", msg.c_str());
    std::fflush(stderr);
}

// ---------------------------------------------------------------- npy I/O --

struct Matrix {
    size_t n = 0, d = 0;
    std::vector<float> v;
    const float *row(size_t i) const { return v.data() + i * d; }
    float *row(size_t i) { return v.data() + i * d; }
};

// Value text of key `key` in a numpy header dict, e.g. "'<f4'" or "(3, 4)".
bool header_field(const std::string &h, const std::string &key, std::string &out) {
    const std::string pat = "'" + key + "'";
    size_t p = h.find(pat);
    if (p == std::string::npos) return false;
    p = h.find(':', p + pat.size());
    if (p == std::string::npos) return false;
    ++p;
    while (p < h.size() && h[p] == ' ') ++p;
    if (p >= h.size()) return false;
    size_t e;
    if (h[p] == '(') {
        e = h.find(')', p);
        if (e == std::string::npos) return false;
        ++e;
    } else if (h[p] == '\'' || h[p] == '"') {
        e = h.find(h[p], p + 1);
        if (e == std::string::npos) return false;
        ++e;
    } else {
        e = h.find_first_of(",}", p);
        if (e == std::string::npos) return false;
    }
    out = h.substr(p, e - p);
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return true;
}

// Parse "(a, b)" into dims; false on anything else.
bool parse_shape(const std::string &s, std::vector<uint64_t> &dims) {
    dims.clear();
    if (s.size() < 2 || s.front() != '(' || s.back() != ')') return false;
    size_t i = 1;
    const size_t end = s.size() - 1;
    while (i < end) {
        while (i < end && (s[i] == ' ' || s[i] == ',')) ++i;
        if (i >= end) break;
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t val = 0;
        while (i < end && s[i] >= '0' && s[i] <= '9') {
            if (val > (UINT64_MAX - 9) / 10) return false;
            val = val * 10 + uint64_t(s[i] - '0');
            ++i;
        }
        if (i < end && s[i] == 'L') ++i;  // python2-era headers
        dims.push_back(val);
    }
    return true;
}

Matrix read_npy_f32(const std::string &path, const char *what) {
    const std::string tag = std::string(what) + " file '" + path + "'";
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) die("cannot open " + tag + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) die("cannot stat " + tag + ": " + std::strerror(errno));
    const uint64_t fsize = uint64_t(st.st_size);

    unsigned char pre[12];
    if (std::fread(pre, 1, 10, f) != 10 || std::memcmp(pre, "\x93NUMPY", 6) != 0)
        die(tag + " is not a .npy file (bad magic or too short)");
    const int major = pre[6];
    uint64_t hlen, hstart;
    if (major == 1) {
        hlen = uint64_t(pre[8]) | (uint64_t(pre[9]) << 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (std::fread(pre + 10, 1, 2, f) != 2) die(tag + ": truncated .npy header");
        hlen = uint64_t(pre[8]) | (uint64_t(pre[9]) << 8) | (uint64_t(pre[10]) << 16) |
               (uint64_t(pre[11]) << 24);
        hstart = 12;
    } else {
        die(tag + ": unsupported .npy format version " + std::to_string(major));
    }
    if (hlen > (1u << 20) || hstart + hlen > fsize) die(tag + ": truncated or oversized .npy header");
    std::string h(size_t(hlen), '\0');
    if (std::fread(&h[0], 1, size_t(hlen), f) != size_t(hlen)) die(tag + ": truncated .npy header");

    std::string descr, fortran, shape;
    if (!header_field(h, "descr", descr) || !header_field(h, "fortran_order", fortran) ||
        !header_field(h, "shape", shape))
        die(tag + ": malformed .npy header: " + h);
    if (descr != "'<f4'" && descr != "\"<f4\"")
        die(tag + ": dtype " + descr + " not supported (need float32 '<f4')");
    if (fortran != "False") die(tag + ": Fortran-ordered arrays are not supported (need C order)");
    std::vector<uint64_t> dims;
    if (!parse_shape(shape, dims) || dims.size() != 2)
        die(tag + ": need a 2-D array, header shape is " + shape);
    if (dims[0] == 0 || dims[1] == 0) die(tag + ": empty array, shape " + shape);
    if (dims[0] > UINT64_MAX / dims[1] || dims[0] * dims[1] > (UINT64_MAX - hstart - hlen) / 4 ||
        dims[0] * dims[1] > SIZE_MAX / sizeof(float))
        die(tag + ": shape " + shape + " is too large");
    const uint64_t nbytes = dims[0] * dims[1] * 4;
    const uint64_t need = hstart + hlen + nbytes;
    if (fsize < need)
        die(tag + ": truncated: header says " + shape + " (" + std::to_string(need) + " bytes) but file has " +
            std::to_string(fsize) + " bytes");
    if (fsize > need) log_msg("warning: " + tag + " has " + std::to_string(fsize - need) + " trailing bytes; ignored");

    Matrix m;
    m.n = size_t(dims[0]);
    m.d = size_t(dims[1]);
    m.v.resize(m.n * m.d);
    if (std::fread(m.v.data(), 4, m.v.size(), f) != m.v.size()) die(tag + ": short read");
    std::fclose(f);
    return m;
}

void write_npy_i32(const std::string &path, const std::vector<int32_t> &ids, size_t rows, size_t cols) {
    std::string h = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "), }";
    // v1.0: 10-byte preamble + header; total padded with spaces to a multiple of 64, ending in '\n'.
    size_t total = 10 + h.size() + 1;
    total = (total + 63) / 64 * 64;
    h.append(total - 10 - h.size() - 1, ' ');
    h.push_back('\n');
    if (h.size() > 65535) die("npy header too long for " + path, 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(h.size() & 0xff),
                             (unsigned char)(h.size() >> 8)};
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f) die("cannot write '" + path + "': " + std::strerror(errno), 1);
    bool ok = std::fwrite(pre, 1, 10, f) == 10 && std::fwrite(h.data(), 1, h.size(), f) == h.size() &&
              std::fwrite(ids.data(), sizeof(int32_t), ids.size(), f) == ids.size();
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) die("write error on '" + path + "'", 1);
}

// ------------------------------------------------------------ arguments --

struct Args {
    std::string base, queries, metric = "l2", index, search, out_dir;
    size_t k = 10;
    int threads = 1;
    int build_threads = 0;  // 0: same as threads
    size_t batch = 1;
    size_t ef_construction = 200;
    size_t hnsw_m = 32;
    bool search_given = false;
};

size_t parse_pos(const std::string &opt, const std::string &s) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        die(opt + " needs a positive integer, got '" + s + "'");
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno || v == 0 || v > (1ull << 31)) die(opt + " out of range: '" + s + "'");
    return size_t(v);
}

Args parse_args(int argc, char **argv) {
    Args a;
    bool have_base = false, have_q = false, have_index = false, have_out = false;
    for (int i = 1; i < argc; ++i) {
        std::string opt = argv[i], val;
        size_t eq = opt.find('=');
        if (opt.rfind("--", 0) == 0 && eq != std::string::npos) {
            val = opt.substr(eq + 1);
            opt = opt.substr(0, eq);
        } else if (opt == "-h" || opt == "--help") {
            std::fprintf(stderr,
                         "usage: %s --base B.npy --queries Q.npy --k 10 --metric l2|ip|cosine --index FACTORY\n"
                         "          --search 'efSearch=16,32' --threads N --batch B --out-dir DIR\n"
                         "          [--ef-construction 200] [--hnsw-m 32] [--build-threads N]\n",
                         argv[0]);
            std::exit(0);
        } else {
            if (i + 1 >= argc) die("option " + opt + " needs a value");
            val = argv[++i];
        }
        if (opt == "--base") a.base = val, have_base = true;
        else if (opt == "--queries") a.queries = val, have_q = true;
        else if (opt == "--k") a.k = parse_pos(opt, val);
        else if (opt == "--metric") a.metric = val;
        else if (opt == "--index") a.index = val, have_index = true;
        else if (opt == "--search") a.search = val, a.search_given = true;
        else if (opt == "--threads") a.threads = int(parse_pos(opt, val));
        else if (opt == "--build-threads") a.build_threads = int(parse_pos(opt, val));
        else if (opt == "--batch") a.batch = parse_pos(opt, val);
        else if (opt == "--out-dir") a.out_dir = val, have_out = true;
        else if (opt == "--ef-construction") a.ef_construction = parse_pos(opt, val);
        else if (opt == "--hnsw-m") a.hnsw_m = parse_pos(opt, val);
        else die("unknown option '" + opt + "'");
    }
    if (!have_base || !have_q || !have_index || !have_out)
        die("--base, --queries, --index and --out-dir are required");
    if (a.metric != "l2" && a.metric != "ip" && a.metric != "cosine")
        die("--metric must be l2, ip or cosine, got '" + a.metric + "'");
    if (a.threads > 1024 || a.build_threads > 1024) die("--threads too large");
    if (a.build_threads == 0) a.build_threads = a.threads;
    return a;
}

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t p = s.find(sep, start);
        out.push_back(trim(s.substr(start, p == std::string::npos ? std::string::npos : p - start)));
        if (p == std::string::npos) break;
        start = p + 1;
    }
    return out;
}

using ParamList = std::vector<std::pair<std::string, std::vector<std::string>>>;

ParamList parse_search(const std::string &spec) {
    ParamList out;
    if (trim(spec).empty()) return out;
    for (const std::string &part : split(spec, ';')) {
        if (part.empty()) continue;
        size_t eq = part.find('=');
        if (eq == std::string::npos) die("bad --search element '" + part + "' (expected name=v1,v2,...)");
        std::string name = trim(part.substr(0, eq));
        if (name.empty()) die("bad --search element '" + part + "' (empty name)");
        for (const auto &p : out)
            if (p.first == name) die("--search parameter '" + name + "' given twice");
        std::vector<std::string> vals = split(part.substr(eq + 1), ',');
        for (const std::string &v : vals) {
            char *endp = nullptr;
            if (v.empty()) die("bad --search values for '" + name + "'");
            std::strtod(v.c_str(), &endp);
            if (!endp || *endp) die("--search value '" + v + "' for '" + name + "' is not a number");
        }
        out.emplace_back(name, vals);
    }
    return out;
}

// FAISS search-parameter names that this peer accepts and ignores (they have no
// hnswlib meaning); anything else that is not efSearch is an error.
bool is_foreign_param(const std::string &name) {
    static const char *const known[] = {"nprobe", "k_factor", "k_factor_rf", "quantizer_efSearch",
                                        "quantizer_nprobe", "max_codes", "ht", "parallel_mode"};
    for (const char *k : known)
        if (name == k) return true;
    return false;
}

// ----------------------------------------------------------- thread pool --

using Clock = std::chrono::steady_clock;

// Runs fn(t) for t in [0, n) with t == 0 on the calling thread.  Waiting sides
// (workers for the next job, the caller for the slices) spin for a bounded
// time (batches usually follow each other closely) and then block on a
// condition variable, so an oversubscribed machine is not made worse by
// long spinning.
class Pool {
  public:
    explicit Pool(int n) : n_(n) {
        for (int t = 1; t < n_; ++t) workers_.emplace_back([this, t] { loop(t); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lk(mu_);
            stop_ = true;
            gen_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto &w : workers_) w.join();
    }
    int size() const { return n_; }
    void run(const std::function<void(int)> &fn) {
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
    static void relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        std::this_thread::yield();
#endif
    }
    // Poll pred for up to kSpinMicros; true as soon as it holds.
    template <class Pred> static bool spin_until(Pred pred) {
        const auto deadline = Clock::now() + std::chrono::microseconds(kSpinMicros);
        for (;;) {
            for (int i = 0; i < 32; ++i) {
                if (pred()) return true;
                relax();
            }
            if (Clock::now() >= deadline) return pred();
        }
    }
    void loop(int t) {
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
                if (stop_) return;
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

void normalise_rows(Matrix &m) {
    for (size_t i = 0; i < m.n; ++i) {
        float *r = m.row(i);
        double s = 0;
        for (size_t j = 0; j < m.d; ++j) s += double(r[j]) * r[j];
        if (s > 0) {
            const float inv = float(1.0 / std::sqrt(s));
            for (size_t j = 0; j < m.d; ++j) r[j] *= inv;
        }
    }
}

// numpy's default (linear interpolation) percentile, so both peers agree.
double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const double pos = q / 100.0 * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

std::string json_str(const std::string &s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += char(c);
        } else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            o += buf;
        } else {
            o += char(c);
        }
    }
    return o + "\"";
}

std::string json_num(double x) {
    if (!std::isfinite(x)) return "0.0";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", x);
    return buf;
}

}  // namespace

int main(int argc, char **argv) {
    const Args a = parse_args(argc, argv);
    const ParamList params = parse_search(a.search);

    // Index kind from the factory string.
    const std::string fac = trim(a.index);
    if (fac.empty()) die("--index is empty");
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
            while (e < fac.size() && fac[e] >= '0' && fac[e] <= '9') ++e;
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
                if (!ef_values.empty()) die("both efSearch and ef_search given");
                for (const auto &v : p.second) parse_pos(p.first, v);
                ef_values = p.second;
                ef_name = p.first;
            }
        } else if (!is_foreign_param(p.first)) {
            die("unknown search parameter '" + p.first + "' (hnswlib understands efSearch)");
        }
    }
    if (flat) {
        if (!params.empty()) log_msg("Flat (brute force): search parameters ignored; one run");
    } else {
        for (const auto &p : params)
            if (!is_ef(p.first)) log_msg("ignoring '" + p.first + "' (not applicable to HNSW)");
        if (ef_values.empty()) {
            ef_values = {"10", "20", "40", "80", "120", "200", "400", "800"};
            log_msg("--search has no efSearch; using the default sweep efSearch=10,20,40,80,120,200,400,800");
        }
    }

    Matrix xb = read_npy_f32(a.base, "base");
    Matrix xq = read_npy_f32(a.queries, "queries");
    if (xq.d != xb.d)
        die("dimension mismatch: base d=" + std::to_string(xb.d) + ", queries d=" + std::to_string(xq.d));
    if (xb.n > size_t(INT32_MAX)) die("too many base rows for int32 ids");
    const size_t nb = xb.n, nq = xq.n, d = xb.d, k = a.k;
    {
        struct stat st;
        if (stat(a.out_dir.c_str(), &st) != 0) {
            if (mkdir(a.out_dir.c_str(), 0777) != 0 && errno != EEXIST)
                die("cannot create --out-dir '" + a.out_dir + "': " + std::strerror(errno));
        } else if (!S_ISDIR(st.st_mode)) {
            die("--out-dir '" + a.out_dir + "' is not a directory");
        }
    }

    const bool cosine = a.metric == "cosine";
    // Cosine: queries are normalised here, before any timing starts; the base is
    // normalised inside the timed build (it is part of preparing the index).
    if (cosine) normalise_rows(xq);

    std::unique_ptr<hnswlib::SpaceInterface<float>> space;
    if (a.metric == "l2")
        space.reset(new hnswlib::L2Space(d));
    else
        space.reset(new hnswlib::InnerProductSpace(d));  // distance = 1 - ip; only ids are reported

    Pool pool(a.threads);
    Pool build_pool(a.build_threads);
    log_msg("building " + index_name + " on " + std::to_string(nb) + " x " + std::to_string(d) + " (" + a.metric +
            ", " + std::to_string(a.build_threads) + " threads)");

    std::unique_ptr<hnswlib::AlgorithmInterface<float>> alg;
    hnswlib::HierarchicalNSW<float> *hnsw = nullptr;
    const auto b0 = Clock::now();
    try {
        if (cosine) normalise_rows(xb);
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
                if (s >= nb) break;
                size_t e = std::min(nb, s + chunk);
                try {
                    for (size_t i = s; i < e; ++i) alg->addPoint(xb.row(i), hnswlib::labeltype(i));
                } catch (const std::exception &ex) {
                    std::lock_guard<std::mutex> lk(err_mu);
                    err = ex.what();
                    next.store(nb);
                    break;
                }
            }
        });
        if (!err.empty()) throw std::runtime_error(err);
    } catch (const std::exception &ex) {
        die(std::string("index build failed: ") + ex.what(), 1);
    }
    const double build_s = std::chrono::duration<double>(Clock::now() - b0).count();
    std::vector<float>().swap(xb.v);  // hnswlib holds its own copy

    long long index_bytes = 0;
    {
        const std::string p = a.out_dir + "/hnswlib.index";
        try {
            alg->saveIndex(p);
        } catch (const std::exception &ex) {
            die("saveIndex failed: " + std::string(ex.what()), 1);
        }
        struct stat st;
        if (stat(p.c_str(), &st) != 0) die("cannot stat '" + p + "' after saveIndex", 1);
        index_bytes = (long long)st.st_size;
        std::remove(p.c_str());
    }
    {
        char buf[128];
        std::snprintf(buf, sizeof buf, "built in %.3f s, %lld bytes", build_s, index_bytes);
        log_msg(buf);
    }

    // One search call for the query rows [s, e): inline when one thread or one
    // query, otherwise contiguous slices over the pool.
    const size_t kk = std::min(k, nb);  // BruteforceSearch reads past its data when k > n
    auto search_rows = [&](size_t s, size_t e, int32_t *out) {
        for (size_t i = s; i < e; ++i) {
            auto res = alg->searchKnn(xq.row(i), kk);
            int32_t *o = out + (i - s) * k;
            std::fill(o, o + k, int32_t(-1));
            for (size_t j = res.size(); j > 0; --j) {  // max-heap: farthest first
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
            if (a0 < a1) search_rows(a0, a1, out + (a0 - s) * k);
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
            for (size_t s = 0; s < nwarm; s += a.batch)  // untimed warm-up
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

            const std::string ids_file = a.out_dir + "/hnswlib_" + std::to_string(si) + ".npy";
            write_npy_i32(ids_file, ids, nq, k);
            const double qps = wall > 0 ? double(nq) / wall : 0.0;
            std::string line = "{\"index\": " + json_str(index_name) + ", \"params\": " + json_str(pstr) +
                               ", \"qps\": " + json_num(qps) + ", \"p50_us\": " + json_num(percentile(lat, 50)) +
                               ", \"p99_us\": " + json_num(percentile(lat, 99)) +
                               ", \"build_s\": " + json_num(build_s) +
                               ", \"index_bytes\": " + std::to_string(index_bytes) +
                               ", \"threads\": " + std::to_string(a.threads) +
                               ", \"batch\": " + std::to_string(a.batch) + ", \"ids_file\": " + json_str(ids_file) +
                               "}\n";
            std::fputs(line.c_str(), stdout);
            std::fflush(stdout);
            char buf[160];
            std::snprintf(buf, sizeof buf, "setting %zu/%zu [%s] done: %.0f qps", si + 1, nsettings, pstr.c_str(),
                          qps);
            log_msg(buf);
        } catch (const std::exception &ex) {
            die(std::string("search failed: ") + ex.what(), 1);
        }
    }
    return 0;
}
