/* bench_core: a load generator for a running keyless-core cluster on loopback. It plays R
 * aggregators, each sending one top-level root per second-round, multiplexed over C connections
 * to the nodes' internal ports (proto/aggregation.proto Request frames, 4-byte length framing),
 * and measures how the core answers them.
 *
 * Rounds are aligned to wall-clock seconds (CLOCK_REALTIME, the clock the nodes use):
 *   - after every connection is up, the first round is the second after next; -t rounds follow;
 *   - in each round the R requests are sent evenly over the window [-o, -o + -W) milliseconds
 *     after the second starts (a 1 ms timer; -W 0: all at -o), round-robin over the connections,
 *     which are spread round-robin over the addresses given with -a;
 *   - each request is a fresh SHA-256 imprint (SHA-256 of seed and request number) at level -l
 *     (default 10), standing for an aggregator's round root;
 *   - a request is not sent again when the answer is a retry (that is counted instead).
 * For every answer: the latency from handing the request to libuv (uv_write) to having read the
 * answer; the second it was committed in; its status. And how long after the end of its round
 * (wall time of the answer minus the end of the answer's second) it came.
 *
 * Every OK answer is checked: exactly one 0x801, a calendar chain and an authentication record;
 * its second is not before the second it was sent in. A signature is built from it as an
 * aggregator at level -l would (the 0x801's first level correction plus the request level, then
 * the 0x802 and the 0x805; tests/system/core_client.c does the same at level 0) and parsed.
 * Every -v'th one is verified with kl_verifier_run under the internal policy, with the request's
 * imprint as the document hash at level -l, and its calendar root is compared with the first one
 * seen for that second from any node (so two nodes answering from forked calendars cannot pass).
 * A wrong answer, an answer nobody asked for, or a failed verification aborts (SIGABRT), so the
 * figures cannot time garbage.
 *
 * Kept up: every request answered OK within -K seconds (default 2) of being sent, no retry, no
 * error, nothing lost, and no request went out over 100 ms after its scheduled time (otherwise the
 * generator, not the core, fell behind, and the run says so).
 *
 * Bounded: -t rounds (at most -n requests in all); after the last round, answers are awaited for
 * at most -T seconds (then the rest count as lost); a guard timer aborts a run that outlives all
 * of that by 30 s. Only loopback addresses are accepted.
 *
 * Mutual TLS (-C CA -P CERT -k KEY, an aggregator certificate of the cluster CA): every
 * connection makes its TLS 1.3 handshake (keyless's memory-BIO sessions, bench_tls.c; the node
 * must present a keyless://core/N certificate) and waits for the node's empty frame that says
 * it accepted the certificate (docs/formats.md) before the load starts; then the frames go as
 * records. Without them the connections are plain, for nodes run with [tls] insecure = yes.
 *
 * With -D PID,PID,PID the nodes' CPU time (utime + stime from /proc/PID/stat) is read at the start
 * of the first round and after the last answer, and reported per round sent. The generator runs
 * on one libuv loop; on a small machine it shares the cores with the nodes, and prints its own CPU.
 *
 * Output: a human summary and one line "result key=value ..." for scripts (run_core_bench.sh).
 *
 * usage: bench_core -a HOST:PORT[,HOST:PORT...] -R RATE [-c CONNS] [-t ROUNDS] [-n COUNT]
 *                   [-l LEVEL] [-o MS] [-W MS] [-K SECONDS] [-T SECONDS] [-v EVERY] [-s SEED]
 *                   [-D PIDS] [-C CA -P CERT -k KEY] [-V]
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggr_load.h" /* connections, framing, the request table, the answer checks, figures */
#include "keyless/pdu.h"

typedef struct opts {
  uint64_t rate, rounds, max_count;
  double offset_ms, window_ms;
  bool per_round;
  long pid[AL_MAX_ADDRS]; /* -D: the nodes' processes, for their CPU time */
  size_t n_pids;
} opts_t;

typedef struct run {
  al_run_t a; /* first: the hooks get &a */
  const opts_t *o;
  uint64_t first_round; /* wall second */
  unsigned next_conn;
  bool in_rounds;                   /* the first round has begun */
  double rounds_mono0, rounds_cpu0; /* at the first round's start */
  double node_cpu0[AL_MAX_ADDRS], node_cpu1[AL_MAX_ADDRS];
} run_t;

/* ---- the schedule ---- */

/* How many requests are due by wall time w: whole rounds before w's second, and the share of
 * w's own round that the window has reached. */
static uint64_t due_at(const run_t *r, double w) {
  const opts_t *o = r->o;
  if (w < (double)r->first_round) return 0;
  uint64_t s = (uint64_t)w, k = s - r->first_round;
  if (k >= o->rounds) return r->a.total;
  double ms = (w - (double)s) * 1000.0 - o->offset_ms;
  uint64_t part;
  if (ms < 0) part = 0;
  else if (o->window_ms <= 0 || ms >= o->window_ms) part = o->rate;
  else part = (uint64_t)ceil((double)o->rate * ms / o->window_ms);
  uint64_t d = k * o->rate + part;
  return d < r->a.total ? d : r->a.total;
}

static void on_tick(al_run_t *a) {
  run_t *r = (run_t *)a;
  const opts_t *o = r->o;
  double w = al_wall_now();
  if (!r->in_rounds && w >= (double)r->first_round) { /* CPU from here to the last answer */
    r->in_rounds = true;
    r->rounds_mono0 = kb_now();
    r->rounds_cpu0 = kb_cpu();
    for (size_t k = 0; k < o->n_pids; k++) r->node_cpu0[k] = al_proc_cpu(o->pid[k]);
  }
  uint64_t due = due_at(r, w);
  if (due <= a->next) return;
  double now = kb_now();
  unsigned nc = (unsigned)a->cfg.conns;
  for (; a->next < due; a->next++) {
    al_conn_t *c = NULL;
    for (unsigned k = 0; k < nc && c == NULL; k++) {
      al_conn_t *x = &a->c[(r->next_conn + k) % nc];
      if (!x->lost && !x->closing) c = x;
    }
    if (c == NULL) return; /* cannot happen: a lost last connection stops the run */
    r->next_conn = (c->idx + 1) % nc;
    /* request m of round k is due at second k + (offset + window * m / rate) ms; later than
     * 100 ms after that, the generator (not the core) is behind */
    uint64_t k = a->next / o->rate, mi = a->next % o->rate;
    double sched = (double)(r->first_round + k) + (o->offset_ms + o->window_ms * (double)mi / (double)o->rate) / 1e3;
    al_send(a, c, a->next, w, now, sched);
  }
  al_flush_all(a);
}

static void on_start(al_run_t *a) {
  run_t *r = (run_t *)a;
  r->first_round = (uint64_t)al_wall_now() + 2;
  a->first_sec = r->first_round;
}

static void on_stop(al_run_t *a) {
  run_t *r = (run_t *)a;
  for (size_t k = 0; k < r->o->n_pids; k++) r->node_cpu1[k] = al_proc_cpu(r->o->pid[k]);
}

static double last_round_end(al_run_t *a) {
  run_t *r = (run_t *)a;
  return (double)(r->first_round + r->o->rounds);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_core -a HOST:PORT[,HOST:PORT...] -R RATE [-c CONNS] [-t ROUNDS] [-n COUNT] [-l LEVEL]\n"
          "                  [-o MS] [-W MS] [-K SECONDS] [-T SECONDS] [-v EVERY] [-s SEED]\n"
          "                  [-D PIDS] [-C CA -P CERT -k KEY] [-V]\n"
          "  -a LIST     the core nodes' internal ports, comma-separated (loopback only)\n"
          "  -R RATE     requests per second-round, in total over all connections (aggregators)\n"
          "  -c CONNS    connections, spread round-robin over the addresses (default 30)\n"
          "  -t ROUNDS   second-rounds to send in (default 20)\n"
          "  -n COUNT    at most COUNT requests in all (default 2000000, at most 20000000; rounds are\n"
          "              cut to fit)\n"
          "  -l LEVEL    the requests' level (default 10)\n"
          "  -o MS       the round's requests start MS ms after the second starts (default 10)\n"
          "  -W MS       ... and are spread evenly over MS ms (default 100; 0: all at once); a request\n"
          "              going out over 100 ms after its time means the generator fell behind\n"
          "  -K SECONDS  kept up: every request answered OK within this (default 2)\n"
          "  -T SECONDS  after the last round, wait this long for answers (default 10)\n"
          "  -v EVERY    verify every EVERY'th OK answer (default 10; 1: all); all are parsed\n"
          "  -s SEED     seed of the imprints (default 1)\n"
          "  -D PIDS     the nodes' process ids, comma-separated: their CPU time from the start of the\n"
          "              first round to the last answer, per round sent\n"
          "  -C CA       mutual TLS 1.3 to the nodes: the cluster CA (PEM); with -P and -k, an aggregator's\n"
          "  -P CERT     certificate and key (keyless devpki ... --nodes aggregator:1); the nodes must\n"
          "  -k KEY      present core certificates. Without them: plain TCP ([tls] insecure = yes)\n"
          "  -V          a line per round\n");
}


int main(int argc, char **argv) {
  al_prog = "bench_core";
  opts_t o = {.rounds = 20, .max_count = 2000000, .offset_ms = 10, .window_ms = 100};
  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) al_die("run", "out of memory");
  al_run_t *a = &r->a;
  al_cfg_t *g = &a->cfg;
  *g = (al_cfg_t){.peer = "the core", .conns = 30, .level = 10, .verify_every = 10, .seed = 1, .keep_s = 2,
                  .drain_s = 10, .late_s = 0.1, .tls_roles = KL_ROLE_CORE, .connecting_max = 0, .rx_min = 65536,
                  .rx_first = 262144, .tx_first = 8192, .min_chains = 1, .max_chains = 1,
                  .chains_expect = "expected one", .parse_all = true, .report_retry = false,
                  .eof_hint = "closed by the node during the TLS handshake (is it run with [tls] insecure = yes, "
                              "or does it refuse the certificate?)"};
  a->hk = (al_hooks_t){.on_start = on_start, .on_tick = on_tick, .on_stop = on_stop, .last_round_end = last_round_end};
  char *addrs = NULL;
  int ch;
  char *pids = NULL;
  while ((ch = getopt(argc, argv, "a:R:c:t:n:l:o:W:K:T:v:s:D:C:P:k:Vh")) != -1) {
    bool ok = true;
    if (!al_common_opt(g, ch, optarg, &ok)) switch (ch) {
      case 'a': addrs = optarg; break;
      case 'R': ok = kb_parse_count(optarg, &o.rate) && o.rate <= 1000000; break;
      case 'c': ok = kb_parse_count(optarg, &g->conns) && g->conns <= 20000; break;
      case 't': ok = kb_parse_count(optarg, &o.rounds) && o.rounds <= 3600; break;
      case 'n': ok = kb_parse_count(optarg, &o.max_count) && o.max_count <= 20000000; break;
      case 'o': ok = al_parse_dbl(optarg, 0, 900, &o.offset_ms); break;
      case 'W': ok = al_parse_dbl(optarg, 0, 1000, &o.window_ms); break;
      case 'D': pids = optarg; break;
      case 'V': o.per_round = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_core: bad value '%s' for -%c\n", optarg, ch);
      return 2;
    }
  }
  if (optind != argc || addrs == NULL || o.rate == 0) {
    usage(stderr);
    return 2;
  }
  if (o.offset_ms + o.window_ms > 1000) al_die("-o/-W", "the window must end within the second");
  for (char *save = NULL, *tok = strtok_r(addrs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (g->n_addrs == AL_MAX_ADDRS) al_die("-a", "too many addresses");
    g->addr[g->n_addrs++] = tok;
  }
  for (char *save = NULL, *tok = pids ? strtok_r(pids, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
    uint64_t v;
    if (o.n_pids == AL_MAX_ADDRS || !kb_parse_count(tok, &v) || v >= (1u << 31)) al_die("-D", "expected PID,PID,...");
    o.pid[o.n_pids++] = (long)v;
    if (isnan(al_proc_cpu((long)v))) al_die("-D", "no such process");
  }
  if (o.max_count / o.rate < o.rounds) o.rounds = o.max_count / o.rate;
  if (o.rounds == 0) al_die("-n", "fewer than one round's requests");
  signal(SIGPIPE, SIG_IGN);

  r->o = &o;
  al_init(a, o.rate * o.rounds, o.rounds + (uint64_t)g->drain_s + 8);

  kb_print_header("bench_core");
  printf("target: %zu nodes (", g->n_addrs);
  for (size_t k = 0; k < g->n_addrs; k++) printf("%s%s", k ? ", " : "", g->addr[k]);
  printf("); %llu connections, %s\n", (unsigned long long)g->conns,
         a->tls ? "mutual TLS 1.3 (handshakes before the load starts)" : "plain TCP");
  printf("load: %llu requests per second-round (aggregator roots at level %llu) for %llu rounds, each round's sent "
         "evenly over [%.0f, %.0f) ms of its second, round-robin over the connections\n",
         (unsigned long long)o.rate, (unsigned long long)g->level, (unsigned long long)o.rounds, o.offset_ms,
         o.offset_ms + o.window_ms);
  printf("checks: every OK answer parsed as a signature, every %llu'th verified (internal policy) and its calendar "
         "root compared across nodes; kept up = all OK within %.1f s; drain %.0f s\n",
         (unsigned long long)g->verify_every, g->keep_s, g->drain_s);
  fflush(stdout);

  al_run(a);

  /* ---- figures ---- */
  double *lat = malloc(a->total * sizeof *lat), *aft = malloc(a->total * sizeof *aft);
  if (lat == NULL || aft == NULL) al_die("figures", "out of memory");
  al_tally_t t = al_tally(a, 0, lat, aft);
  if (o.per_round) {
    printf("\n%-11s %7s %7s %6s %6s %6s %9s %9s %9s\n", "round", "sent", "ok", "retry", "err+lost", "moved", "p50 ms",
           "max ms", "end+ ms");
    double *v = malloc(o.rate * sizeof *v);
    if (v == NULL) al_die("figures", "out of memory");
    for (uint64_t k = 0; k < o.rounds; k++) {
      uint64_t ok = 0, rt = 0, ot = 0, mv = 0;
      size_t nv = 0;
      double emax = NAN;
      for (uint64_t i = k * o.rate; i < (k + 1) * o.rate; i++) {
        const al_rq_t *q = &a->q[i];
        if (q->state == AL_OK) {
          double after_end = q->ans_wall - (double)(q->ans_sec + 1);
          ok++;
          v[nv++] = q->lat;
          mv += q->ans_sec != q->sent_sec;
          if (isnan(emax) || after_end > emax) emax = after_end;
        } else if (q->state == AL_RETRY) rt++;
        else ot++;
      }
      al_dist_t d = al_dist_of(v, nv);
      printf("%-11llu %7llu %7llu %6llu %6llu %6llu %9.1f %9.1f %9.1f\n", (unsigned long long)(r->first_round + k),
             (unsigned long long)o.rate, (unsigned long long)ok, (unsigned long long)rt, (unsigned long long)ot,
             (unsigned long long)mv, d.p50 * 1e3, d.max * 1e3, emax * 1e3);
    }
    free(v);
  }
  al_dist_t dl = al_dist_of(lat, t.n), da = al_dist_of(aft, t.n);
  uint64_t max_flight = al_max_flight(a);
  double wall = a->t_end_mono - a->t0_mono, cpu = a->cpu1 - a->cpu0;
  bool kept = t.ok == a->total && t.slow == 0 && a->gen_late == 0;
  const char *why = kept ? "" : t.lost || t.unsent || a->conns_closed ? " (requests lost)"
                             : a->gen_late ? " (the generator fell behind: the run says nothing of the core)"
                             : t.retry || t.err ? " (retries or errors)"
                                                : " (answers slower than -K)";
  printf("\nsent %llu in %llu rounds (from second %llu); answered OK %llu, retry %llu, other errors %llu, lost %llu, never sent %llu; "
         "OK in a later second than sent %llu; sent over 100 ms late %llu (at most %.1f ms late); connections closed by "
         "the core %llu\n",
         (unsigned long long)a->next, (unsigned long long)o.rounds, (unsigned long long)r->first_round,
         (unsigned long long)t.ok, (unsigned long long)t.retry, (unsigned long long)t.err, (unsigned long long)t.lost,
         (unsigned long long)t.unsent, (unsigned long long)t.moved, (unsigned long long)a->gen_late,
         a->gen_delay_max * 1e3, (unsigned long long)a->conns_closed);
  printf("latency send -> OK answer, ms:         p50 %.1f  p90 %.1f  p99 %.1f  max %.1f (over %.1f s: %llu)\n",
         dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3, g->keep_s, (unsigned long long)t.slow);
  printf("OK answer after the end of its second, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", da.p50 * 1e3,
         da.p90 * 1e3, da.p99 * 1e3, da.max * 1e3);
  for (size_t n = 0; n < g->n_addrs; n++) { /* per node: how long after the round's end its answers came */
    size_t k = 0;
    uint64_t nr = 0;
    for (uint64_t i = 0; i < a->total; i++) {
      const al_rq_t *q = &a->q[i];
      if (a->c[q->conn].addr != n) continue;
      if (q->state == AL_OK) aft[k++] = q->ans_wall - (double)(q->ans_sec + 1);
      else if (q->state == AL_RETRY) nr++;
    }
    al_dist_t d = al_dist_of(aft, k);
    printf("  node %s: OK %zu, retry %llu; after the end of the second, ms: p50 %.1f  p99 %.1f  max %.1f\n", g->addr[n],
           k, (unsigned long long)nr, d.p50 * 1e3, d.p99 * 1e3, d.max * 1e3);
  }
  printf("checked: %llu signatures parsed, %llu verified (internal policy, calendar roots agree across nodes); most "
         "in flight on one connection %llu\n",
         (unsigned long long)a->parsed, (unsigned long long)a->verified, (unsigned long long)max_flight);
  printf("generator: %.1f s, cpu %.1f s (%.0f%% of one core)\n", wall, cpu, wall > 0 ? 100 * cpu / wall : 0.0);
  double rwall = r->in_rounds ? a->t_end_mono - r->rounds_mono0 : 0;
  char nodecpu[256] = "";
  size_t nlen = 0;
  if (o.n_pids && r->in_rounds) {
    printf("CPU from the first round's start to the last answer (%.1f s, %llu rounds sent):\n", rwall,
           (unsigned long long)o.rounds);
    for (size_t k = 0; k < o.n_pids; k++) {
      double d = r->node_cpu1[k] - r->node_cpu0[k];
      printf("  pid %ld: %.2f s, %.1f ms per round, %.0f%% of one core\n", o.pid[k], d, 1e3 * d / (double)o.rounds,
             rwall > 0 ? 100 * d / rwall : 0.0);
      if (nlen < sizeof nodecpu - 40)
        nlen += (size_t)snprintf(nodecpu + nlen, sizeof nodecpu - nlen, " cpu_ms_round_%zu=%.1f", k + 1,
                                 1e3 * d / (double)o.rounds);
    }
    double gc = a->cpu1 - r->rounds_cpu0;
    printf("  bench_core: %.2f s, %.1f ms per round, %.0f%% of one core\n", gc, 1e3 * gc / (double)o.rounds,
           rwall > 0 ? 100 * gc / rwall : 0.0);
  }
  printf("kept up: %s%s\n", kept ? "yes" : "no", why);
  printf("result rate=%llu conns=%llu rounds=%llu sent=%llu ok=%llu retry=%llu err=%llu lost=%llu unsent=%llu moved=%llu "
         "gen_late=%llu closed=%llu p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f end_p50_ms=%.1f end_p99_ms=%.1f "
         "end_max_ms=%.1f verified=%llu max_flight=%llu gen_cpu=%.0f%%%s kept_up=%s\n",
         (unsigned long long)o.rate, (unsigned long long)g->conns, (unsigned long long)o.rounds,
         (unsigned long long)a->next, (unsigned long long)t.ok, (unsigned long long)t.retry, (unsigned long long)t.err,
         (unsigned long long)t.lost, (unsigned long long)t.unsent, (unsigned long long)t.moved,
         (unsigned long long)a->gen_late, (unsigned long long)a->conns_closed, dl.p50 * 1e3, dl.p90 * 1e3,
         dl.p99 * 1e3, dl.max * 1e3, da.p50 * 1e3, da.p99 * 1e3, da.max * 1e3, (unsigned long long)a->verified,
         (unsigned long long)max_flight, wall > 0 ? 100 * cpu / wall : 0.0, nodecpu, kept ? "yes" : "no");
  free(lat);
  free(aft);
  al_free(a);
  free(r);
  return 0;
}
