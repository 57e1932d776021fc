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
// __has_include and member detection, not by version numbers. The npy reader and writer are the
// hnswlib peer's (peer_hnswlib.cpp), kept in step by hand.

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
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

namespace
{

[[noreturn]] void die(const std::string &msg, int code = 2)
{
    std::fprintf(stderr, "peer_faiss: error: %s\n", msg.c_str());
    std::exit(code);
}

void log_msg(const std::string &msg)
{
    std::fprintf(stderr, "peer_faiss: %s\n", msg.c_str());
    std::fflush(stderr);
}

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

// ---------------------------------------------------------------- npy I/O --

struct Matrix {
    size_t n = 0, d = 0;
    std::vector<float> v;
    const float *row(size_t i) const
    {
        return v.data() + i * d;
    }
    float *row(size_t i)
    {
        return v.data() + i * d;
    }
};

// Value text of key `key` in a numpy header dict, e.g. "'<f4'" or "(3, 4)".
bool header_field(const std::string &h, const std::string &key, std::string &out)
{
    const std::string pat = "'" + key + "'";
    size_t p = h.find(pat);
    if (p == std::string::npos)
        return false;
    p = h.find(':', p + pat.size());
    if (p == std::string::npos)
        return false;
    ++p;
    while (p < h.size() && h[p] == ' ')
        ++p;
    if (p >= h.size())
        return false;
    size_t e;
    if (h[p] == '(') {
        e = h.find(')', p);
        if (e == std::string::npos)
            return false;
        ++e;
    } else if (h[p] == '\'' || h[p] == '"') {
        e = h.find(h[p], p + 1);
        if (e == std::string::npos)
            return false;
        ++e;
    } else {
        e = h.find_first_of(",}", p);
        if (e == std::string::npos)
            return false;
    }
    out = h.substr(p, e - p);
    while (!out.empty() && out.back() == ' ')
        out.pop_back();
    return true;
}

// Parse "(a, b)" into dims; false on anything else.
bool parse_shape(const std::string &s, std::vector<uint64_t> &dims)
{
    dims.clear();
    if (s.size() < 2 || s.front() != '(' || s.back() != ')')
        return false;
    size_t i = 1;
    const size_t end = s.size() - 1;
    while (i < end) {
        while (i < end && (s[i] == ' ' || s[i] == ','))
            ++i;
        if (i >= end)
            break;
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t val = 0;
        while (i < end && s[i] >= '0' && s[i] <= '9') {
            if (val > (UINT64_MAX - 9) / 10)
                return false;
            val = val * 10 + uint64_t(s[i] - '0');
            ++i;
        }
        if (i < end && s[i] == 'L')
            ++i; // python2-era headers
        dims.push_back(val);
    }
    return true;
}

Matrix read_npy_f32(const std::string &path, const char *what)
{
    const std::string tag = std::string(what) + " file '" + path + "'";
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f)
        die("cannot open " + tag + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0)
        die("cannot stat " + tag + ": " + std::strerror(errno));
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
        if (std::fread(pre + 10, 1, 2, f) != 2)
            die(tag + ": truncated .npy header");
        hlen = uint64_t(pre[8]) | (uint64_t(pre[9]) << 8) | (uint64_t(pre[10]) << 16) |
               (uint64_t(pre[11]) << 24);
        hstart = 12;
    } else {
        die(tag + ": unsupported .npy format version " + std::to_string(major));
    }
    if (hlen > (1u << 20) || hstart + hlen > fsize)
        die(tag + ": truncated or oversized .npy header");
    std::string h(size_t(hlen), '\0');
    if (std::fread(&h[0], 1, size_t(hlen), f) != size_t(hlen))
        die(tag + ": truncated .npy header");

    std::string descr, fortran, shape;
    if (!header_field(h, "descr", descr) || !header_field(h, "fortran_order", fortran) ||
        !header_field(h, "shape", shape))
        die(tag + ": malformed .npy header: " + h);
    if (descr != "'<f4'" && descr != "\"<f4\"")
        die(tag + ": dtype " + descr + " not supported (need float32 '<f4')");
    if (fortran != "False")
        die(tag + ": Fortran-ordered arrays are not supported (need C order)");
    std::vector<uint64_t> dims;
    if (!parse_shape(shape, dims) || dims.size() != 2)
        die(tag + ": need a 2-D array, header shape is " + shape);
    if (dims[0] == 0 || dims[1] == 0)
        die(tag + ": empty array, shape " + shape);
    if (dims[0] > UINT64_MAX / dims[1] || dims[0] * dims[1] > (UINT64_MAX - hstart - hlen) / 4 ||
        dims[0] * dims[1] > SIZE_MAX / sizeof(float))
        die(tag + ": shape " + shape + " is too large");
    const uint64_t nbytes = dims[0] * dims[1] * 4;
    const uint64_t need = hstart + hlen + nbytes;
    if (fsize < need)
        die(tag + ": truncated: header says " + shape + " (" + std::to_string(need) +
            " bytes) but file has " + std::to_string(fsize) + " bytes");
    if (fsize > need)
        log_msg("warning: " + tag + " has " + std::to_string(fsize - need) + " trailing bytes; ignored");

    Matrix m;
    m.n = size_t(dims[0]);
    m.d = size_t(dims[1]);
    m.v.resize(m.n * m.d);
    if (std::fread(m.v.data(), 4, m.v.size(), f) != m.v.size())
        die(tag + ": short read");
    std::fclose(f);
    return m;
}

void write_npy_i32(const std::string &path, const std::vector<int32_t> &ids, size_t rows, size_t cols)
{
    std::string h = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                    std::to_string(cols) + "), }";
    // v1.0: 10-byte preamble + header; total padded with spaces to a multiple of 64, ending in '\n'.
    size_t total = 10 + h.size() + 1;
    total = (total + 63) / 64 * 64;
    h.append(total - 10 - h.size() - 1, ' ');
    h.push_back('\n');
    if (h.size() > 65535)
        die("npy header too long for " + path, 1);
    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(h.size() & 0xff),
                             (unsigned char)(h.size() >> 8)};
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f)
        die("cannot write '" + path + "': " + std::strerror(errno), 1);
    bool ok = std::fwrite(pre, 1, 10, f) == 10 && std::fwrite(h.data(), 1, h.size(), f) == h.size() &&
              std::fwrite(ids.data(), sizeof(int32_t), ids.size(), f) == ids.size();
    ok = (std::fclose(f) == 0) && ok;
    if (!ok)
        die("write error on '" + path + "'", 1);
}

// ------------------------------------------------------------ arguments --

struct Args {
    std::string base, queries, metric = "l2", index, search, out_dir;
    size_t k = 10;
    int threads = 1;
    int build_threads = 0; // 0: same as threads
    size_t batch = 1;
    size_t ef_construction = 200;
};

size_t parse_pos(const std::string &opt, const std::string &s)
{
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        die(opt + " needs a positive integer, got '" + s + "'");
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno || v == 0 || v > (1ull << 31))
        die(opt + " out of range: '" + s + "'");
    return size_t(v);
}

Args parse_args(int argc, char **argv)
{
    Args a;
    bool have_base = false, have_q = false, have_index = false, have_out = false;
    for (int i = 1; i < argc; ++i) {
        std::string opt = argv[i], val;
        size_t eq = opt.find('=');
        if (opt.rfind("--", 0) == 0 && eq != std::string::npos) {
            val = opt.substr(eq + 1);
            opt = opt.substr(0, eq);
        } else if (opt == "-h" || opt == "--help") {
            std::fprintf(
                stderr,
                "usage: %s --base B.npy --queries Q.npy --k 10 --metric l2|ip|cosine --index FACTORY\n"
                "          --search 'nprobe=1,2;k_factor=4' --threads N --batch B --out-dir DIR\n"
                "          [--ef-construction 200] [--build-threads N] [--hnsw-m M (unused)]\n",
                argv[0]);
            std::exit(0);
        } else {
            if (i + 1 >= argc)
                die("option " + opt + " needs a value");
            val = argv[++i];
        }
        if (opt == "--base")
            a.base = val, have_base = true;
        else if (opt == "--queries")
            a.queries = val, have_q = true;
        else if (opt == "--k")
            a.k = parse_pos(opt, val);
        else if (opt == "--metric")
            a.metric = val;
        else if (opt == "--index")
            a.index = val, have_index = true;
        else if (opt == "--search")
            a.search = val;
        else if (opt == "--threads")
            a.threads = int(parse_pos(opt, val));
        else if (opt == "--build-threads")
            a.build_threads = int(parse_pos(opt, val));
        else if (opt == "--batch")
            a.batch = parse_pos(opt, val);
        else if (opt == "--out-dir")
            a.out_dir = val, have_out = true;
        else if (opt == "--ef-construction")
            a.ef_construction = parse_pos(opt, val);
        else if (opt == "--hnsw-m")
            parse_pos(opt, val); // accepted for symmetry with the hnswlib peer; unused
        else
            die("unknown option '" + opt + "'");
    }
    if (!have_base || !have_q || !have_index || !have_out)
        die("--base, --queries, --index and --out-dir are required");
    if (a.metric != "l2" && a.metric != "ip" && a.metric != "cosine")
        die("--metric must be l2, ip or cosine, got '" + a.metric + "'");
    if (a.threads > 1024 || a.build_threads > 1024)
        die("--threads too large");
    if (a.build_threads == 0)
        a.build_threads = a.threads;
    return a;
}

std::string trim(const std::string &s)
{
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::vector<std::string> split(const std::string &s, char sep)
{
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t p = s.find(sep, start);
        out.push_back(trim(s.substr(start, p == std::string::npos ? std::string::npos : p - start)));
        if (p == std::string::npos)
            break;
        start = p + 1;
    }
    return out;
}

using ParamList = std::vector<std::pair<std::string, std::vector<std::string>>>;

// 'a=1,2;b=3' -> [(a, [1, 2]), (b, [3])]; '' -> [].
ParamList parse_search(const std::string &spec)
{
    ParamList out;
    if (trim(spec).empty())
        return out;
    for (const std::string &part : split(spec, ';')) {
        if (part.empty())
            continue;
        size_t eq = part.find('=');
        if (eq == std::string::npos)
            die("bad --search element '" + part + "' (expected name=v1,v2,...)");
        std::string name = trim(part.substr(0, eq));
        if (name.empty())
            die("bad --search element '" + part + "' (empty parameter name)");
        for (const auto &p : out)
            if (p.first == name)
                die("--search parameter '" + name + "' given twice");
        std::vector<std::string> vals = split(part.substr(eq + 1), ',');
        for (const std::string &v : vals) {
            char *endp = nullptr;
            if (v.empty())
                die("bad --search values for '" + name + "'");
            std::strtod(v.c_str(), &endp);
            if (!endp || *endp)
                die("--search value '" + v + "' for '" + name + "' is not a number");
        }
        out.emplace_back(name, vals);
    }
    return out;
}

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

using Clock = std::chrono::steady_clock;

// Unit rows, with FAISS's own routine (the script's faiss.normalize_L2), OpenMP-parallel.
void normalise_rows(Matrix &m)
{
    faiss::fvec_renorm_L2(m.d, m.n, m.v.data());
}

// numpy's default (linear interpolation) percentile, so the peers agree.
double percentile(std::vector<double> v, double q)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const double pos = q / 100.0 * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

std::string json_str(const std::string &s)
{
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

std::string json_num(double x)
{
    if (!std::isfinite(x))
        return "0.0";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", x);
    return buf;
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
    const Args a = parse_args(argc, argv);
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
    {
        struct stat st;
        if (stat(a.out_dir.c_str(), &st) != 0) {
            if (mkdir(a.out_dir.c_str(), 0777) != 0 && errno != EEXIST)
                die("cannot create --out-dir '" + a.out_dir + "': " + std::strerror(errno));
        } else if (!S_ISDIR(st.st_mode)) {
            die("--out-dir '" + a.out_dir + "' is not a directory");
        }
    }

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
    log_msg("building " + fac + " on " + std::to_string(nb) + " x " + std::to_string(d) + " (" + a.metric +
            ", " + std::to_string(a.build_threads) + " threads)");
    std::unique_ptr<faiss::Index> index;
    const auto b0 = Clock::now();
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
    const double build_s = std::chrono::duration<double>(Clock::now() - b0).count();
    std::vector<float>().swap(xb.v); // the index holds what it needs

    long long index_bytes = 0;
    try {
        faiss::VectorIOWriter w;
        faiss::write_index(index.get(), &w);
        index_bytes = (long long)w.data.size();
    } catch (const std::exception &e) {
        die("write_index failed: " + faiss_msg(e), 1);
    }
    omp_set_num_threads(a.threads);
    {
        char buf[128];
        std::snprintf(buf, sizeof buf, "built in %.3f s, %lld bytes", build_s, index_bytes);
        log_msg(buf);
    }

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

        const std::string ids_file = a.out_dir + "/faiss_" + std::to_string(si) + ".npy";
        write_npy_i32(ids_file, ids, nq, k);
        const double qps = wall > 0 ? double(nq) / wall : 0.0;
        const std::string line =
            "{\"index\": " + json_str(label + a.index) + ", \"params\": " + json_str(pstr) +
            ", \"qps\": " + json_num(qps) + ", \"p50_us\": " + json_num(percentile(lat, 50)) +
            ", \"p99_us\": " + json_num(percentile(lat, 99)) + ", \"build_s\": " + json_num(build_s) +
            ", \"index_bytes\": " + std::to_string(index_bytes) +
            ", \"threads\": " + std::to_string(a.threads) + ", \"batch\": " + std::to_string(a.batch) +
            ", \"ids_file\": " + json_str(ids_file) + "}\n";
        std::fputs(line.c_str(), stdout);
        std::fflush(stdout);
        char buf[200];
        std::snprintf(buf, sizeof buf, "setting %zu/%zu [%s] done: %.0f qps", si + 1, settings.size(),
                      pstr.c_str(), qps);
        log_msg(buf);
    }
    return 0;
}
