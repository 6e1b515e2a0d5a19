"""Where a PostgreSQL rotation's work goes: PostgreSQL transactions and CPU per rotation, Gatehouse's
CPU per rotation, and the sequential and index scans of the tables a refresh touches, around a 6 s
`load refresh` of 32 chains. PREFILL=N first adds N spent refresh tokens (and ANALYZEs).

    GATEHOUSE_BIN=... python3 bench/profile/pg_rotation_split.py
"""
import importlib.machinery, importlib.util, os, secrets, json, time
loader = importlib.machinery.SourceFileLoader("benchrun", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "run"))
spec = importlib.util.spec_from_loader("benchrun", loader)
b = importlib.util.module_from_spec(spec); loader.exec_module(b)
work = "/tmp/pgsplit"; os.makedirs(work, exist_ok=True)
bench = b.Bench(True, work)
dbname = "gatehouse_split_" + secrets.token_hex(4)
b.run(["psql", b.PG_URL, "-qc", f"CREATE DATABASE {dbname}"])
db_url = b.PG_URL.rsplit("/", 1)[0] + "/" + dbname
def commits():
    return int(b.run(["psql", db_url, "-Atc", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{dbname}'"]).stdout)
def scans():
    out = b.run(["psql", db_url, "-Atc", "SELECT relname, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables WHERE relname IN ('refresh_tokens', 'grants', 'kept_rows_version', 'oauth_clients', 'workspaces') ORDER BY relname"]).stdout
    return out
def pg_cpu():
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit(): continue
        try:
            st = open(f"/proc/{pid}/stat").read()
        except OSError: continue
        if "(postgres)" in st:
            f = st.rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")
def own_cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
try:
    gh = b.Gatehouse("pg", database_url=db_url, signing_alg="ES256")
    chains = bench._file("chains.txt", "\n".join(gh.refresh_chains(32)))
    prefill = int(os.environ.get("PREFILL", "0"))
    if prefill:
        b.run(["psql", db_url, "-qc", f"INSERT INTO refresh_tokens (token_hash, grant_id, scope, created_at, expires_at, used_at) SELECT 'old-' || i, (SELECT id FROM grants LIMIT 1), 's', 0, 1, 0 FROM generate_series(1, {prefill}) i; ANALYZE refresh_tokens"])
    b.load("refresh", "--url", f"{gh.url}/token", "--chains-file", chains, "--seconds", 2)
    print(scans())
    c0, p0, g0 = commits(), pg_cpu(), own_cpu(gh.server.proc.pid)
    r = b.load("refresh", "--url", f"{gh.url}/token", "--chains-file", chains, "--seconds", 6)
    time.sleep(0.6)  # pg_stat counters are flushed by backends on a timer
    c1, p1, g1 = commits(), pg_cpu(), own_cpu(gh.server.proc.pid)
    n = r["ok_per_sec"] * 6
    print(scans())
    print(json.dumps({"rotations_per_s": r["ok_per_sec"], "pg_commits_per_rotation": (c1 - c0) / n,
                      "pg_cpu_us_per_rotation": (p1 - p0) / n * 1e6, "gatehouse_cpu_us_per_rotation": (g1 - g0) / n * 1e6}))
    gh.stop()
finally:
    b.run(["psql", b.PG_URL, "-qc", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"], check=False)
