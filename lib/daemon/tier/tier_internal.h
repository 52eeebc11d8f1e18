/* keyless: the tier's internals shared by tier.c (rounds, parents' answers) and tier_parents.c
 * (heartbeats, silence, health): the parent, the round in flight, the tier. Not installed. */
#ifndef KEYLESS_TIER_INTERNAL_H
#define KEYLESS_TIER_INTERNAL_H

#include "keyless/frameclient.h"
#include "keyless/tier.h"
#include "tier_link.h"

#define MAX_PARENTS 16
#define MAX_FRAME (1u << 20)
#define MAX_PARTS 64
/* Answers given per loop iteration: a round of tens of thousands of requests is answered in
 * slices, so the loop keeps reading, writing and closing rounds on time meanwhile. */
#define FANOUT_SLICE 2048

typedef struct parent {
  kl_tier_t *t;
  int index;
  kl_frame_client_t *fc;
  char addr[128];
  kl_link_t link;   /* liveness and readiness (tier_link.h) */
  bool up;          /* kl_link_usable as last reported (metric, log) */
  char why[96];     /* its last Pong's reason when not ready */
  uint32_t lead_ms; /* its lead, as its last answer said */
  kl_metric_t *m_up, *m_used, *m_late, *m_error, *m_invalid, *m_silent;
} parent_t;

/* A closed round waiting for its parents. */
typedef struct flight {
  uint64_t id;
  kl_round_t *round;
  void **ctx;
  size_t n;
  kl_imprint_t root;
  unsigned level;
  uint64_t closed_at, deadline, next_try; /* loop time, ms */
  int current;                            /* failover: the parent asked last, -1 none */
  uint32_t tried, failed;                 /* bit per parent */
  /* Once a valid answer came: the parent's parts (one copy), being handed out slot by slot. */
  uint8_t *pbuf;
  const uint8_t *parts[MAX_PARTS];
  size_t lens[MAX_PARTS], n_parts, next_slot, ptotal;
  uint64_t second;
  struct flight *next;
} flight_t;

struct kl_tier {
  uv_loop_t *loop;
  kl_tier_config_t cfg;
  char name[128];
  parent_t parents[MAX_PARENTS];
  size_t n_parents;
  kl_round_t *open;
  void **open_ctx;
  size_t open_cap;
  flight_t *flights; /* oldest first */
  flight_t *answering, **answering_tail; /* answered rounds being fanned out, in order */
  flight_t *full, **full_tail; /* rounds that held max_requests, to close and send (on_fanout) */
  uv_idle_t fanout;
  bool in_fanout; /* on_fanout is running: a done callback may close the tier meanwhile */
  size_t held;
  uint64_t next_id;
  uv_timer_t timer, link_timer;
  uint64_t ping_id;
  uint64_t last_ok, last_fail, last_parent_up; /* loop ms: a round answered, failed; a parent came up */
  char last_why[120];                          /* the last failed round's reason */
  kl_tier_done_fn done;
  void *arg;
  kl_buf_t scratch;
  bool closing;
  int closes_pending;
  void (*close_cb)(void *);
  void *close_arg;
  kl_metrics_t *m;
  char kind[32];
  kl_metric_t *m_answered, *m_failed, *m_timeout, *m_size, *m_latency, *m_early;
  uint64_t lead_ms; /* rounds close this long before a second's end (tier_clock.h) */
};

/* tier_parents.c */
/* The metric and the log follow the parent's usability; a parent coming up is remembered. */
void kl__tier_report(kl_tier_t *t, parent_t *p);
/* A Ping on the parent's link (counted as waiting for an answer). */
void kl__tier_send_ping(kl_tier_t *t, parent_t *p);
/* The link timer's callback: Pings and silence for every parent. */
void kl__tier_on_link_timer(uv_timer_t *h);

#endif
