"""The gateway's CPU per call at the latency row's load (2,000 req/s tools/call to the HTTP upstream),
and with `perf` a profile of it in /tmp/perf-lat.data:

    GATEHOUSE_BIN=... python3 bench/profile/latency_cpu.py 8 perf    (or `none` for the CPU figure only)
    perf report -i /tmp/perf-lat.data --no-children --sort symbol -g none
"""
import importlib.machinery, importlib.util, os, subprocess, sys, time, json
loader = importlib.machinery.SourceFileLoader("benchrun", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "run"))
spec = importlib.util.spec_from_loader("benchrun", loader)
b = importlib.util.module_from_spec(spec); loader.exec_module(b)
b.OHA = b.oha_path()
work = "/tmp/prof-work"; os.makedirs(work, exist_ok=True)
bench = b.Bench(True, work)
up_port = b.free_port()
up = b.Server([os.path.join(b.TOOLS, "upstream"), "--listen", f"127.0.0.1:{up_port}"], up_port, cpu=b.UPSTREAM_CPU)
upstream_url = f"http://127.0.0.1:{up_port}/mcp"
gh = b.Gatehouse("sqlite", upstream_url=upstream_url)
try:
    token = gh.user_access_token("lat")
    body = bench.calls["payload"]
    b.oha(gh.mcp_url("lat"), 2, rate=2000, headers=b.mcp_headers("payload", token), body=body)
    pid = gh.server.proc.pid
    # taskset wrapper: the gatehouse pid is its child? taskset execs, so same pid.
    secs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    mode = sys.argv[2] if len(sys.argv) > 2 else "perf"
    t0 = open(f"/proc/{pid}/stat").read().split()
    if mode == "perf":
        perf = subprocess.Popen(["perf", "record", "-F", "2000", "--call-graph", "dwarf,16384", "-o", "/tmp/perf-lat.data", "-p", str(pid), "--", "sleep", str(secs)])
    r = b.oha(gh.mcp_url("lat"), secs, rate=2000, headers=b.mcp_headers("payload", token), body=body)
    t1 = open(f"/proc/{pid}/stat").read().split()
    if mode == "perf":
        perf.wait()
    hz = os.sysconf("SC_CLK_TCK")
    cpu = (int(t1[13]) + int(t1[14]) - int(t0[13]) - int(t0[14])) / hz
    n = r["summary"]["successRate"] * 2000 * secs
    print(json.dumps({"p50_ms": r["latencyPercentiles"]["p50"] * 1000, "p99_ms": r["latencyPercentiles"]["p99"] * 1000,
                      "cpu_s": cpu, "user": (int(t1[13]) - int(t0[13])) / hz, "sys": (int(t1[14]) - int(t0[14])) / hz,
                      "cpu_us_per_call": cpu / (2000 * secs) * 1e6}))
finally:
    gh.stop(); up.stop()
