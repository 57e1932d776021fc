// peer_common.hpp: what the compiled benchmark peers (peer_hnswlib.cpp, peer_faiss.cpp) share.
//
// What it does: the parts of the peer protocol that do not depend on the library under test: the
// command line (Args, parse_args, parse_pos, the --search sweep, --index-file: an index saved by an earlier
// run is loaded instead of built, build_s then being the load time, as vecshard-bench --load-index), the .npy
// reader ('<f4', 2-D, C order) and the ids writer (int32), the --out-dir check, the result report (ids file,
// the JSON line on stdout, a progress line on stderr; p50/p99 as numpy computes them), and die/log_msg.
//
// What it does not do: anything that knows hnswlib or FAISS (factory strings, search-parameter names
// and their meaning, the index label, cosine normalisation, the timed loops); nor return errors: a peer
// is a one-shot process that the harness reads by its exit status, so bad input dies with status 2 and a
// failure after the input was accepted with status 1, as before this file existed.
//
// Key design choice: header-only and included once per peer, so the optional peers need no library
// and peers.cmake nothing new. Each peer defines VS_PEER_NAME ("peer_hnswlib", "peer_faiss") before
// including it: every stderr line keeps its peer's prefix, fixed at compile time.

#ifndef VS_TESTS_BENCH_PEER_COMMON_HPP
#define VS_TESTS_BENCH_PEER_COMMON_HPP

#ifndef VS_PEER_NAME
#error "define VS_PEER_NAME (the stderr prefix, e.g. \"peer_faiss\") before including peer_common.hpp"
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

namespace vs_peer
{

using Clock = std::chrono::steady_clock;

// "<peer>: error: msg" on stderr, then exit(code): 2 for bad input, 1 for a failure after it.
[[noreturn]] inline void die(const std::string &msg, int code = 2)
{
    std::fprintf(stderr, VS_PEER_NAME ": error: %s\n", msg.c_str());
    std::exit(code);
}

inline void log_msg(const std::string &msg)
{
    std::fprintf(stderr, VS_PEER_NAME ": %s\n", msg.c_str());
    std::fflush(stderr);
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
inline bool header_field(const std::string &h, const std::string &key, std::string &out)
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
inline bool parse_shape(const std::string &s, std::vector<uint64_t> &dims)
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

// The whole of a .npy file holding a non-empty 2-D float32 C-order array (versions 1-3); `what`
// ("base", "queries") names it in messages. Dies on anything else; trailing bytes only warn.
inline Matrix read_npy_f32(const std::string &path, const char *what)
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

// ids (rows*cols, row-major) as a version 1.0 .npy of '<i4'; dies with status 1 if it cannot.
inline void write_npy_i32(const std::string &path, const std::vector<int32_t> &ids, size_t rows, size_t cols)
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

// The command line vecshard-bench gives every peer (tests/bench/bench_main.c, run_peer).
struct Args {
    std::string base, queries, metric = "l2", index, search, out_dir;
    std::string index_file; // --index-file: load the index from it when it exists, else build and save it
    size_t k = 10;
    int threads = 1;
    int build_threads = 0; // 0: same as threads
    size_t batch = 1;
    size_t ef_construction = 200;
    size_t hnsw_m = 32; // hnswlib's M when --index names no HNSW{M}; the FAISS peer ignores it
};

// s as an integer in 1..2^31, or die naming opt.
inline size_t parse_pos(const std::string &opt, const std::string &s)
{
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        die(opt + " needs a positive integer, got '" + s + "'");
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno || v == 0 || v > (1ull << 31))
        die(opt + " out of range: '" + s + "'");
    return size_t(v);
}

// "--opt value" and "--opt=value"; -h/--help prints the usage, whose lines after the first (the
// peer's own --search example and optional flags) are usage_tail, and exits 0.
inline Args parse_args(int argc, char **argv, const char *usage_tail)
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
                "usage: %s --base B.npy --queries Q.npy --k 10 --metric l2|ip|cosine --index FACTORY\n%s",
                argv[0], usage_tail);
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
            a.hnsw_m = parse_pos(opt, val);
        else if (opt == "--index-file")
            a.index_file = val;
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

inline std::string trim(const std::string &s)
{
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Fields of s between seps, each trimmed; one field (maybe empty) if s has no sep.
inline std::vector<std::string> split(const std::string &s, char sep)
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

// 'a=1,2;b=3' -> [(a, [1, 2]), (b, [3])]; '' -> []. Values must be numbers; names are not checked
// here (each peer knows its own). empty_name_note ends the message for '=1': the peers have always
// worded it differently ("empty parameter name" is the script's).
inline ParamList parse_search(const std::string &spec, const char *empty_name_note = "empty parameter name")
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
            die("bad --search element '" + part + "' (" + empty_name_note + ")");
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

// --------------------------------------------------------------- output --

// Creates dir if it does not exist; dies if it cannot, or if dir is not a directory.
inline void make_out_dir(const std::string &dir)
{
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) {
        if (mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
            die("cannot create --out-dir '" + dir + "': " + std::strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        die("--out-dir '" + dir + "' is not a directory");
    }
}

// Size of the regular file at path, or -1 when there is none (an --index-file not written yet).
inline long long file_bytes(const std::string &path)
{
    struct stat st;
    return !path.empty() && stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0
               ? (long long)st.st_size
               : -1;
}

// numpy's default (linear interpolation) percentile, so the peers (and the script) agree.
inline double percentile(std::vector<double> v, double q)
{
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const double pos = q / 100.0 * double(v.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

inline std::string json_str(const std::string &s)
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

inline std::string json_num(double x)
{
    if (!std::isfinite(x))
        return "0.0";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", x);
    return buf;
}

inline void log_built(double build_s, long long index_bytes, bool loaded = false)
{
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s in %.3f s, %lld bytes", loaded ? "loaded" : "built", build_s,
                  index_bytes);
    log_msg(buf);
}

// The results of setting si (0-based) of nsettings: ids (nq * a.k, row-major, -1 for missing) to
// a.out_dir/<stem>_<si>.npy, then the harness's JSON line on stdout (index, params, qps over wall_s,
// p50_us and p99_us of lat_us, build_s, index_bytes, threads, batch, ids_file) and a progress line.
inline void report_setting(const Args &a, const std::string &stem, size_t si, size_t nsettings,
                           const std::string &index_label, const std::string &pstr,
                           const std::vector<int32_t> &ids, double wall_s, const std::vector<double> &lat_us,
                           double build_s, long long index_bytes)
{
    const size_t nq = ids.size() / a.k;
    const std::string ids_file = a.out_dir + "/" + stem + "_" + std::to_string(si) + ".npy";
    write_npy_i32(ids_file, ids, nq, a.k);
    const double qps = wall_s > 0 ? double(nq) / wall_s : 0.0;
    const std::string line =
        "{\"index\": " + json_str(index_label) + ", \"params\": " + json_str(pstr) +
        ", \"qps\": " + json_num(qps) + ", \"p50_us\": " + json_num(percentile(lat_us, 50)) +
        ", \"p99_us\": " + json_num(percentile(lat_us, 99)) + ", \"build_s\": " + json_num(build_s) +
        ", \"index_bytes\": " + std::to_string(index_bytes) + ", \"threads\": " + std::to_string(a.threads) +
        ", \"batch\": " + std::to_string(a.batch) + ", \"ids_file\": " + json_str(ids_file) + "}\n";
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    char buf[200];
    std::snprintf(buf, sizeof buf, "setting %zu/%zu [%s] done: %.0f qps", si + 1, nsettings, pstr.c_str(),
                  qps);
    log_msg(buf);
}

} // namespace vs_peer

#endif // VS_TESTS_BENCH_PEER_COMMON_HPP
