/* bench_aggregator: what one child costs a keyless-aggregator. It plays N children (gateways or
 * lower aggregators) against a running aggregator on loopback, each sending one round root per
 * round period exactly as a gateway's tier does (lib/daemon/tier: proto/aggregation.proto
 * Request frames with 4-byte length framing, request_id, imprint, level, client_id = the child's
 * name), and measures the aggregator's CPU per round and per child request, and the latency from
 * a child's send to its answer.
 *
 * The children's connections: a gateway holds one mutual-TLS link per parent, and its identity
 * upstream is Request.client_id, not the connection (the aggregator checks only that the
 * certificate is a gateway's or an aggregator's). So the protocol allows multiplexing; by default
 * every child gets its own connection (-c N, as deployed: N handshakes, N sockets, one TLS record
 * per root), and -c C < N spreads the children round-robin over C connections. The aggregator
 * reads at most 1,024 frames in flight per connection (then stops reading it): with answers
 * about a second away, a connection carries at most ~100 children at a 100 ms period.
 *
 * Timing, as a gateway's tier_clock.c: round k is the period ending at B0 + k * period (wall
 * clock, CLOCK_REALTIME, aligned to multiples of the period); a gateway closes its round lead +
 * KL_TIER_HOP_MS (5 ms) before that, where lead is its parent's lead from Response.lead_ms, so
 * every child sends round k's root at B0 + k * period - (lead + 5) ms (before the first answer,
 * -o MS), all N at once (-W MS spreads them over a window). A request is not sent again.
 *
 * Measured window: rounds 0 .. -w-1 warm the aggregator up (connections, its rounds and the
 * core's answers in steady state); from the send of round -w to the moment round -w + -t would
 * be sent, the CPU (utime + stime, /proc/PID/stat) of the processes given with -D and of this
 * generator is read: in steady state that window holds -t rounds' receiving and -t rounds' answer
 * fan-out, so CPU / (-t x N) is the cost of one child request. The CPU is read twice: from
 * /proc/PID/stat (utime + stime, 10 ms ticks) and from /proc/PID/task/TID/schedstat (time on a CPU
 * in ns, summed over the threads), which is what the per-request figures use. The latency figures cover every
 * request of the rounds from -w on. Per second of the calendar: the spread from the first to the
 * last answer read (the aggregator's fan-out of that second's rounds, as this generator sees it).
 *
 * Same-run reference: one aggregation step of SHA-256 (67 bytes, kl_aggr_step with a reused
 * hasher, bench_hash's method (a)) is timed for -H seconds before the connections and again after
 * the run; the per-child cost is also given as so many hashes.
 *
 * Checks: every OK answer has >= 2 chains (the aggregator's, then its parents' up to the core), a
 * calendar chain and an authentication record, for a second not before the one it was sent in.
 * Every -v'th is built into a signature as a gateway at level -l would (the first 0x801's first
 * level correction plus the request level, then the other 0x801s, the 0x802 and the 0x805),
 * parsed (its signing time is the answer's second), verified with kl_verifier_run under the
 * internal policy with the child's root as the document hash at level -l, and its calendar root
 * is compared with the first seen for its second. (Only a sample: at 5,000 children the answers
 * come at 50,000/s, and this generator shares two cores with the aggregator and the core.)
 * A wrong answer, an answer nobody asked for or a failed verification aborts (SIGABRT).
 *
 * Kept up: every request answered OK within -K seconds (default 2), none lost, none refused, and
 * no request went out over 50 ms after its time (otherwise the generator fell behind).
 *
 * Bounded: -w + -t rounds; answers awaited for at most -T seconds after the last round; a guard
 * aborts a run that outlives that by 30 s, and the connect phase by -T + 120 s. Loopback only.
 *
 * Output: a human summary and one line "result key=value ..." (run_aggregator_bench.sh).
 *
 * usage: bench_aggregator -a HOST:PORT -N CHILDREN [-c CONNS] [-t ROUNDS] [-w WARM] [-p MS]
 *                         [-l LEVEL] [-o MS] [-W MS] [-K S] [-T S] [-v EVERY] [-s SEED] [-H S]
 *                         [-D NAME:PID,...] [-C CA -P CERT -k KEY] [-V]
 */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggr_load.h" /* connections, framing, the request table, the answer checks, figures */
#include "keyless/chains.h"
#include "keyless/pdu.h"

#define MAX_PIDS 4
#define CONNECTING_MAX 128 /* connections in their TCP connect or TLS handshake at once */
#define HOP_MS 5           /* KL_TIER_HOP_MS (lib/daemon/tier/tier_clock.h) */

typedef struct opts {
  uint64_t children, rounds, warm, period_ms;
  double lead_ms, window_ms, hash_s;
  bool lead_fixed, per_round;
  long pid[MAX_PIDS];
  char pid_name[MAX_PIDS][32];
  size_t n_pids;
} opts_t;

typedef struct run {
  al_run_t a; /* first: the hooks get &a */
  const opts_t *o;
  double b0;           /* wall time of the end of round 0's period */
  uint64_t total_rounds;
  double send_lead_ms; /* how long before a period's end the children send */
  uint32_t lead_seen;  /* the last Response.lead_ms */
  /* the measured window */
  bool win_open, win_closed;
  double win_mono0, win_mono1, win_cpu0, win_cpu1, pid_cpu0[MAX_PIDS], pid_cpu1[MAX_PIDS];
  double pid_ns0[MAX_PIDS], pid_ns1[MAX_PIDS]; /* schedstat */
} run_t;

/* ---- the same-run reference: one aggregation step (67 bytes of SHA-256) ---- */

static double hash_ns(double seconds) {
  kl_hasher_t h;
  kl_err_t e = {0};
  if (kl_hasher_init(&h, &e)) al_die("kl_hasher_init", e.msg);
  kl_imprint_t cur;
  if (kl_hash(KL_HASH_SHA256, (const uint8_t *)"ref", 3, &cur, &e)) al_die("kl_hash", e.msg);
  uint8_t sib[33];
  memset(sib, 0x5a, sizeof sib);
  sib[0] = 1; /* SHA-256 */
  uint64_t n = 0;
  double t0 = kb_cpu(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < 4096; i++)
      if (kl_aggr_step(&h, KL_HASH_SHA256, true, &cur, sib, sizeof sib, 42, &cur, &e)) al_die("kl_aggr_step", e.msg);
    n += 4096;
    t = kb_cpu();
  }
  kl_hasher_close(&h);
  return 1e9 * (t - t0) / (double)n;
}

/* ---- the children: their names, their parent's lead, their schedule ---- */

static const char *client_id(al_run_t *a, uint64_t i, char buf[32]) {
  const run_t *r = (const run_t *)a;
  snprintf(buf, 32, "child-%llu", (unsigned long long)(i % r->o->children));
  return buf;
}

static void on_answer(al_run_t *a, const Keyless__Aggregation__Response *ans) {
  run_t *r = (run_t *)a;
  if (ans->has_lead_ms) r->lead_seen = ans->lead_ms;
  if (ans->has_lead_ms && !r->o->lead_fixed) r->send_lead_ms = (double)ans->lead_ms + HOP_MS;
}

/* When round k's roots go out: lead + hop before the end of its period (wall time). */
static double send_time(const run_t *r, uint64_t k) {
  return r->b0 + (double)(k * r->o->period_ms) / 1e3 - r->send_lead_ms / 1e3;
}

static void sample_window(run_t *r, bool open) {
  double *pc = open ? r->pid_cpu0 : r->pid_cpu1, *pn = open ? r->pid_ns0 : r->pid_ns1;
  for (size_t k = 0; k < r->o->n_pids; k++) {
    pc[k] = al_proc_cpu(r->o->pid[k]);
    pn[k] = al_proc_sched(r->o->pid[k]);
  }
  if (open) {
    r->win_open = true;
    r->win_mono0 = kb_now();
    r->win_cpu0 = kb_cpu();
  } else {
    r->win_closed = true;
    r->win_mono1 = kb_now();
    r->win_cpu1 = kb_cpu();
  }
}

static void on_tick(al_run_t *a) {
  run_t *r = (run_t *)a;
  const opts_t *o = r->o;
  double w = al_wall_now();
  if (!r->win_closed && r->win_open && w >= send_time(r, o->warm + o->rounds)) sample_window(r, false);
  if (r->win_closed) al_maybe_stop(a);
  if (a->stopping) return;
  double now = kb_now();
  bool sent = false;
  while (a->next < a->total) {
    uint64_t k = a->next / o->children;
    double sk = send_time(r, k);
    if (w < sk) break;
    if (k == o->warm && a->next % o->children == 0 && !r->win_open) sample_window(r, true);
    uint64_t part = o->children;
    if (o->window_ms > 0 && (w - sk) * 1e3 < o->window_ms)
      part = (uint64_t)ceil((double)o->children * (w - sk) * 1e3 / o->window_ms);
    if (part > o->children) part = o->children;
    uint64_t due = k * o->children + part;
    for (; a->next < due; a->next++) {
      uint64_t j = a->next % o->children;
      al_conn_t *c = &a->c[j % a->cfg.conns];
      if (c->lost || c->closing) {
        a->q[a->next].state = AL_LOST;
        continue;
      }
      al_send(a, c, a->next, w, now, sk + (o->window_ms > 0 ? o->window_ms * (double)j / (double)o->children / 1e3 : 0));
      sent = true;
    }
    if (part < o->children) break;
  }
  if (sent) al_flush_all(a);
}

static void on_stop(al_run_t *a) {
  run_t *r = (run_t *)a;
  if (!r->win_closed && r->win_open) sample_window(r, false);
}

static bool may_stop(al_run_t *a) { return ((run_t *)a)->win_closed; }

static double last_round_end(al_run_t *a) {
  const run_t *r = (const run_t *)a;
  return send_time(r, r->total_rounds);
}

static void on_start(al_run_t *a) {
  run_t *r = (run_t *)a;
  uint64_t p = r->o->period_ms;
  uint64_t now_ms = (uint64_t)(al_wall_now() * 1e3);
  r->b0 = (double)((now_ms + 1500) / p * p + p) / 1e3; /* a period's end at least 1.5 s away */
  a->first_sec = (uint64_t)r->b0 - 1;
  printf("connected: %u connections in %.1f s\n", a->connected, kb_now() - a->connect_start);
  fflush(stdout);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_aggregator -a HOST:PORT -N CHILDREN [-c CONNS] [-t ROUNDS] [-w WARM] [-p MS] [-l LEVEL]\n"
          "                        [-o MS] [-W MS] [-K S] [-T S] [-v EVERY] [-s SEED] [-H S] [-D NAME:PID,...]\n"
          "                        [-C CA -P CERT -k KEY] [-V]\n"
          "  -a ADDR     the aggregator's children's port (loopback only)\n"
          "  -N N        children, each sending one root per round period\n"
          "  -c CONNS    connections; the children round-robin over them (default N: one each, as deployed)\n"
          "  -t ROUNDS   measured rounds (default 50)\n"
          "  -w WARM     rounds before the measured ones (default 20)\n"
          "  -p MS       the round period (default 100, the gateway's and the aggregator's default)\n"
          "  -l LEVEL    the roots' level (default 12, a gateway round of a few thousand requests)\n"
          "  -o MS       send MS ms before each period's end (default: the aggregator's Response.lead_ms + 5,\n"
          "              as a gateway does; 25 until the first answer)\n"
          "  -W MS       spread a round's roots over MS ms (default 0: all at once)\n"
          "  -K S        kept up: every request answered OK within S seconds (default 2)\n"
          "  -T S        wait this long for answers after the last round (default 10)\n"
          "  -v EVERY    build and verify every EVERY'th OK answer (default 50; all are checked)\n"
          "  -s SEED     seed of the roots (default 1)\n"
          "  -H S        CPU seconds for the SHA-256 reference, before and after the run (default 0.5)\n"
          "  -D LIST     NAME:PID of processes whose CPU is read over the measured window (the aggregator\n"
          "              first, then e.g. the core)\n"
          "  -C/-P/-k    mutual TLS 1.3: the cluster CA, a gateway's (or aggregator's) certificate and key;\n"
          "              the aggregator must present an aggregator certificate. Without: plain TCP\n"
          "  -V          a line per calendar second\n");
}


int main(int argc, char **argv) {
  al_prog = "bench_aggregator";
  opts_t o = {.rounds = 50, .warm = 20, .period_ms = 100, .lead_ms = 25, .window_ms = 0, .hash_s = 0.5};
  run_t *r = calloc(1, sizeof *r);
  if (r == NULL) al_die("run", "out of memory");
  al_run_t *a = &r->a;
  al_cfg_t *g = &a->cfg;
  *g = (al_cfg_t){.peer = "the aggregator", .level = 12, .verify_every = 50, .seed = 1, .keep_s = 2, .drain_s = 10,
                  .late_s = 0.05, .tls_roles = KL_ROLE_AGGREGATOR, .connecting_max = CONNECTING_MAX,
                  .rx_min = 16384, .rx_first = 65536, .tx_first = 256, .min_chains = 2, .max_chains = SIZE_MAX,
                  .chains_expect = "expected the aggregator's and the core's", .parse_all = false,
                  .report_retry = true,
                  .eof_hint = "closed by the aggregator during the TLS handshake (is it run with [tls] insecure = yes, "
                              "does it refuse the certificate, or is it over max_connections?)"};
  a->hk = (al_hooks_t){.on_start = on_start, .on_tick = on_tick, .on_stop = on_stop, .may_stop = may_stop,
                       .last_round_end = last_round_end, .on_answer = on_answer, .client_id = client_id};
  char *pids = NULL;
  int ch;
  while ((ch = getopt(argc, argv, "a:N:c:t:w:p:l:o:W:K:T:v:s:H:D:C:P:k:Vh")) != -1) {
    bool ok = true;
    if (!al_common_opt(g, ch, optarg, &ok)) switch (ch) {
      case 'a': g->addr[0] = optarg; g->n_addrs = 1; break;
      case 'N': ok = kb_parse_count(optarg, &o.children) && o.children <= 100000; break;
      case 'c': ok = kb_parse_count(optarg, &g->conns) && g->conns <= 100000; break;
      case 't': ok = kb_parse_count(optarg, &o.rounds) && o.rounds <= 100000; break;
      case 'w':
        ok = (kb_parse_count(optarg, &o.warm) || strcmp(optarg, "0") == 0) && o.warm <= 10000;
        if (strcmp(optarg, "0") == 0) o.warm = 0;
        break;
      case 'p': ok = kb_parse_count(optarg, &o.period_ms) && o.period_ms >= 10 && o.period_ms <= 10000; break;
      case 'o': ok = al_parse_dbl(optarg, 0, 5000, &o.lead_ms); o.lead_fixed = true; break;
      case 'W': ok = al_parse_dbl(optarg, 0, 10000, &o.window_ms); break;
      case 'H': ok = al_parse_dbl(optarg, 0.01, 60, &o.hash_s); break;
      case 'D': pids = optarg; break;
      case 'V': o.per_round = true; break;
      case 'h': usage(stdout); return 0;
      default: usage(stderr); return 2;
    }
    if (!ok) {
      fprintf(stderr, "bench_aggregator: bad value '%s' for -%c\n", optarg, ch);
      return 2;
    }
  }
  if (optind != argc || g->n_addrs == 0 || o.children == 0) {
    usage(stderr);
    return 2;
  }
  if (g->conns == 0 || g->conns > o.children) g->conns = o.children;
  if (o.rounds * o.children > 50000000) al_die("-t/-N", "more than 5 x 10^7 requests");
  for (char *save = NULL, *tok = pids ? strtok_r(pids, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(tok, ':');
    uint64_t v;
    if (o.n_pids == MAX_PIDS || colon == NULL || colon - tok >= 32 || !kb_parse_count(colon + 1, &v) || v >= (1u << 31))
      al_die("-D", "expected NAME:PID,NAME:PID,...");
    memcpy(o.pid_name[o.n_pids], tok, (size_t)(colon - tok));
    o.pid[o.n_pids++] = (long)v;
    if (isnan(al_proc_cpu((long)v))) al_die("-D", "no such process");
  }
  signal(SIGPIPE, SIG_IGN);

  r->o = &o;
  r->total_rounds = o.warm + o.rounds;
  r->send_lead_ms = o.lead_ms;
  al_init(a, r->total_rounds * o.children,
          (uint64_t)((double)(r->total_rounds * o.period_ms) / 1e3 + g->drain_s) + 8);

  kb_print_header("bench_aggregator");
  printf("target: %s; %llu children over %llu connections (%s), %s\n", g->addr[0], (unsigned long long)o.children,
         (unsigned long long)g->conns, g->conns == o.children ? "one per child" : "multiplexed",
         a->tls ? "mutual TLS 1.3 (handshakes before the load starts)" : "plain TCP");
  printf("load: every child one root at level %llu per %llu ms period, sent %s before the period's end%s; %llu warm-up "
         "rounds, %llu measured\n",
         (unsigned long long)g->level, (unsigned long long)o.period_ms, o.lead_fixed ? "-o ms" : "lead_ms + 5 ms",
         o.window_ms > 0 ? " (spread over -W ms)" : " (all at once)", (unsigned long long)o.warm,
         (unsigned long long)o.rounds);
  fflush(stdout);
  double h_before = hash_ns(o.hash_s);
  al_run(a);
  double h_after = hash_ns(o.hash_s);

  /* ---- figures ---- */
  double *lat = malloc(a->total * sizeof *lat), *aft = malloc(a->total * sizeof *aft);
  if (lat == NULL || aft == NULL) al_die("figures", "out of memory");
  uint64_t from = o.warm * o.children, meas = a->total - from;
  al_tally_t t = al_tally(a, from, lat, aft);
  al_dist_t dl = al_dist_of(lat, t.n), da = al_dist_of(aft, t.n);
  /* the fan-out of each calendar second's answers: first to last read here */
  size_t nf = 0;
  double *fan = malloc(a->n_secs * sizeof *fan);
  if (fan == NULL) al_die("figures", "out of memory");
  if (o.per_round) printf("\n%-11s %8s %12s %12s\n", "second", "answers", "first+ ms", "spread ms");
  for (uint64_t k = 0; k < a->n_secs; k++) {
    const al_sec_t *s = &a->secs[k];
    if (s->n == 0) continue;
    if (o.per_round)
      printf("%-11llu %8llu %12.1f %12.1f\n", (unsigned long long)(a->first_sec + k), (unsigned long long)s->n,
             1e3 * (s->first - (double)(a->first_sec + k + 1)), 1e3 * (s->last - s->first));
    /* full seconds only: inside the measured rounds (10 rounds of every child at a 100 ms period) */
    double s0 = (double)(a->first_sec + k), s1 = s0 + 1;
    if (s0 >= send_time(r, o.warm) && s1 <= send_time(r, r->total_rounds)) fan[nf++] = 1e3 * (s->last - s->first);
  }
  al_dist_t df = al_dist_of(fan, nf);
  uint64_t max_flight = al_max_flight(a);
  bool kept = t.ok == a->total && t.slow == 0 && a->gen_late == 0;
  const char *kwhy = kept ? "" : t.lost || t.unsent || a->conns_closed ? " (requests lost)"
                              : a->gen_late ? " (the generator fell behind: the run says little of the aggregator)"
                              : t.retry || t.err ? " (retries or errors)"
                                                 : " (answers slower than -K)";
  double wwin = r->win_mono1 - r->win_mono0;
  double reqs = (double)(o.rounds * o.children);
  double hash = (h_before + h_after) / 2;
  printf("\nsent %llu in %llu rounds; answered OK %llu, retry %llu, other errors %llu, lost %llu, never sent %llu; "
         "sent over 50 ms late %llu (at most %.1f ms late); connections closed by the aggregator %llu; last lead_ms %u\n",
         (unsigned long long)a->next, (unsigned long long)r->total_rounds, (unsigned long long)t.ok,
         (unsigned long long)t.retry, (unsigned long long)t.err, (unsigned long long)t.lost,
         (unsigned long long)t.unsent, (unsigned long long)a->gen_late, a->gen_delay_max * 1e3,
         (unsigned long long)a->conns_closed, r->lead_seen);
  printf("measured rounds (%llu requests): latency send -> OK answer, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
         (unsigned long long)meas, dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3);
  printf("  OK answer after the end of its second, ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", da.p50 * 1e3,
         da.p90 * 1e3, da.p99 * 1e3, da.max * 1e3);
  printf("  a second's answers, first to last read (fan-out), ms, over %zu seconds: p50 %.1f  max %.1f\n", nf,
         df.p50, df.max);
  printf("checked: %llu OK answers (chains, calendar chain, auth record, second), %llu built into signatures and "
         "verified (internal policy, calendar roots agree); most in flight on one connection %llu\n",
         (unsigned long long)a->checked, (unsigned long long)a->verified, (unsigned long long)max_flight);
  printf("reference: one aggregation step (SHA-256 of 67 bytes, kl_aggr_step): %.1f ns before, %.1f ns after the run\n",
         h_before, h_after);
  char res[512] = "";
  size_t rl = 0;
  if (r->win_closed) {
    printf("CPU over the measured window (%.2f s, %llu rounds, %.0f requests):\n", wwin, (unsigned long long)o.rounds, reqs);
    for (size_t k = 0; k < o.n_pids; k++) {
      double d = r->pid_cpu1[k] - r->pid_cpu0[k], dn = r->pid_ns1[k] - r->pid_ns0[k];
      printf("  %s (pid %ld): /proc/PID/stat %.2f s (%.2f ms per round); schedstat %.4f s: %.3f ms per round, %.3f us "
             "per child request (%.0f hashes), %.1f%% of one core\n",
             o.pid_name[k], o.pid[k], d, 1e3 * d / (double)o.rounds, dn, 1e3 * dn / (double)o.rounds, 1e6 * dn / reqs,
             1e9 * dn / reqs / hash, wwin > 0 ? 100 * dn / wwin : 0.0);
      if (rl < sizeof res - 160)
        rl += (size_t)snprintf(res + rl, sizeof res - rl, " %s_stat_ms_round=%.3f %s_ms_round=%.4f %s_us_req=%.4f",
                               o.pid_name[k], 1e3 * d / (double)o.rounds, o.pid_name[k], 1e3 * dn / (double)o.rounds,
                               o.pid_name[k], 1e6 * dn / reqs);
    }
    double gc = r->win_cpu1 - r->win_cpu0;
    printf("  bench_aggregator: %.2f s, %.2f us per child request, %.0f%% of one core\n", gc, 1e6 * gc / reqs,
           wwin > 0 ? 100 * gc / wwin : 0.0);
    rl += (size_t)snprintf(res + rl, sizeof res - rl, " gen_us_req=%.3f window_s=%.3f", 1e6 * gc / reqs, wwin);
  }
  printf("kept up: %s%s\n", kept ? "yes" : "no", kwhy);
  printf("result children=%llu conns=%llu rounds=%llu warm=%llu period_ms=%llu sent=%llu ok=%llu retry=%llu err=%llu "
         "lost=%llu unsent=%llu gen_late=%llu closed=%llu p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f "
         "end_p50_ms=%.1f end_p99_ms=%.1f fan_p50_ms=%.1f fan_max_ms=%.1f verified=%llu max_flight=%llu lead_ms=%u "
         "hash_ns=%.1f%s kept_up=%s\n",
         (unsigned long long)o.children, (unsigned long long)g->conns, (unsigned long long)o.rounds,
         (unsigned long long)o.warm, (unsigned long long)o.period_ms, (unsigned long long)a->next,
         (unsigned long long)t.ok, (unsigned long long)t.retry, (unsigned long long)t.err, (unsigned long long)t.lost,
         (unsigned long long)t.unsent, (unsigned long long)a->gen_late, (unsigned long long)a->conns_closed,
         dl.p50 * 1e3, dl.p90 * 1e3, dl.p99 * 1e3, dl.max * 1e3, da.p50 * 1e3, da.p99 * 1e3, df.p50, df.max,
         (unsigned long long)a->verified, (unsigned long long)max_flight, r->lead_seen, hash, res, kept ? "yes" : "no");
  free(lat);
  free(aft);
  free(fan);
  al_free(a);
  free(r);
  return 0;
}
