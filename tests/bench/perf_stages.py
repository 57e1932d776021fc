#!/usr/bin/python3
"""Groups a `perf report --no-children --sort dso,sym -g none` listing of one vecshard process into the
stages of a query (index search, coarse ranking, merge, protobuf, gRPC core, kernel scheduling, loopback
TCP, libc, ...) and prices each at the given CPU microseconds per query of that process.

    perf record -F 2000 -g -p PID -- sleep 6        # while `vecshard query` saturates the cluster
    perf report -i perf.data --no-children --sort dso,sym -g none | grep % > report.txt
    tests/bench/perf_stages.py report.txt US_PER_QUERY
"""
import re,sys
def cat(dso, sym):
    s=sym
    if 'protobuf_c' in s or 'libprotobuf-c' in dso or '__pack' in s or '__unpack' in s or 'get_packed_size' in s: return 'protobuf decode/encode'
    if re.search(r'vs_coarse|vs_router|plan_cluster|nearest', s): return 'coarse ranking (router or IVF probe)'
    if re.search(r'vs_topk_merge|vs_route_merge|cursor_sift|merge', s): return 'merge'
    if re.search(r'vs_check_finite', s): return 'validate'
    if dso.startswith('vecshard') and re.search(r'scan_|ip_batch|l2sqr|table_|quantize_|search_one|reservoir|sift_down|fs_offer|vs_topk_push|probe|refine|vs_ivf|norm_sqr|prefetch', s): return 'index search'
    if 'kernel' in dso:
        if re.search(r'finish_task_switch|schedule|futex|raw_spin_unlock|irq|ttwu|try_to_wake|select_task|enqueue|dequeue|update_curr|pick_next', s): return 'kernel: scheduling, futex, wake-ups'
        if re.search(r'tcp|ip_|skb|sock|_copy_|epoll|ep_|sys_sendmsg|sys_recvmsg|__dev|net|softirq|loopback|inet', s): return 'kernel: loopback TCP, epoll'
        return 'kernel: other syscalls'
    if 'libgrpc' in dso or 'libgpr' in dso or 'absl' in dso or 'libupb' in dso or 'libaddress' in dso: return 'gRPC core (+abseil)'
    if 'libc' in dso or 'ld-linux' in dso: return 'libc (malloc, memcpy, locks)'
    if dso.startswith('vecshard'): return 'vecshard: other (request code, batching, engine)'
    return 'other: '+dso
tot={}
for line in open(sys.argv[1]):
    m=re.match(r'\s*([\d.]+)%\s+(\S+)\s+\[.\]\s+(.*)$', line)
    if not m: continue
    p=float(m.group(1)); dso=m.group(2); sym=m.group(3).strip()
    c=cat(dso,sym); tot[c]=tot.get(c,0)+p
us=float(sys.argv[2])
for k,v in sorted(tot.items(), key=lambda x:-x[1]):
    print("  %-48s %5.1f %%  ~%5.1f us/query" % (k, v, v*us/100))
