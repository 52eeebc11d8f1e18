/* ksi-tool configuration files for the `keyless` command (cli/conf.c): the line syntax, the
 * FILE:LINE messages for every kind of mistake, and the merging with the command line in the
 * documented priority (command line, --conf FILE, $KSI_CONF), checked through getopt_long. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "testutil.h"

static int parse(const char *text, cli_conf_t *c, char *msg) {
  kl_err_t e = {0};
  int r = cli_conf_parse(c, "ksi.conf", text, strlen(text), &e);
  strcpy(msg, r ? e.msg : "");
  return r;
}

static void test_lines(void **state) {
  (void)state;
  cli_conf_t c;
  char msg[KL_ERR_MSG_MAX];
  const char *text =
      "# a comment\n"
      "\n"
      "   -S http://127.0.0.1:8080/\r\n"
      "--aggr-user anon\n"
      "  # indented comment with \"an odd quote\n"
      "--aggr-key=\"se cret\\\"\"\n"
      "--cnstr E=\"publications@example.org\"\n"
      "-Vca.pem\n"
      "\t--publications-file-no-verify\t\n"
      "-X \"\"\n"
      "--ext-key k";
  assert_int_equal(parse(text, &c, msg), 0);
  assert_int_equal(c.n, 8);
  assert_int_equal(c.v[0].opt->shrt, 'S');
  assert_string_equal(c.v[0].value, "http://127.0.0.1:8080/");
  assert_int_equal(c.v[0].line, 3);
  assert_string_equal(c.v[1].opt->lng, "aggr-user");
  assert_string_equal(c.v[1].value, "anon");
  assert_string_equal(c.v[2].value, "se cret\"");
  assert_true(c.v[2].opt->secret);
  assert_int_equal(c.v[2].line, 6);
  assert_string_equal(c.v[3].value, "E=publications@example.org");
  assert_int_equal(c.v[4].opt->shrt, 'V');
  assert_string_equal(c.v[4].value, "ca.pem");
  assert_null(c.v[5].value);
  assert_string_equal(c.v[5].opt->lng, "publications-file-no-verify");
  assert_string_equal(c.v[6].value, "");
  assert_string_equal(c.v[7].value, "k");
  assert_int_equal(c.v[7].line, 11);
  assert_true(c.has_secret);
  cli_conf_free(&c);

  /* A key inside a URL is a secret too; plain URLs and logins are not. */
  assert_int_equal(parse("-S ksi+http://u:k@host:1/\n", &c, msg), 0);
  assert_true(c.has_secret);
  cli_conf_free(&c);
  assert_int_equal(parse("-S http://host:1/a@b\n--aggr-user u\n", &c, msg), 0);
  assert_false(c.has_secret);
  cli_conf_free(&c);
  assert_int_equal(parse("", &c, msg), 0);
  assert_int_equal(c.n, 0);
  cli_conf_free(&c);
}

static void test_errors(void **state) {
  (void)state;
  static const struct {
    const char *text, *msg;
  } bad[] = {
      {"-S http://x/\n--frobnicate 1\n", "ksi.conf:2: unknown option --frobnicate"},
      {"\n\n-Q\n", "ksi.conf:3: unknown option -Q"},
      {"-Qfoo\n", "ksi.conf:1: unknown option -Qfoo"},
      {"--aggr-user\n", "ksi.conf:1: --aggr-user needs a value"},
      {"-S\n", "ksi.conf:1: -S needs a value"},
      {"--mdata yes\n", "ksi.conf:1: --mdata takes no value"},
      {"--publications-file-no-verify=1\n", "ksi.conf:1: --publications-file-no-verify takes no value"},
      {"--aggr-user a b\n", "ksi.conf:1: more than one value (quote a value that has spaces)"},
      {"--aggr-user=a b\n", "ksi.conf:1: more than one value for --aggr-user"},
      {"--aggr-key \"abc\n", "ksi.conf:1: unterminated quote"},
      {"http://x/\n", "ksi.conf:1: expected an option (e.g. -S URL or --aggr-user NAME), got 'http://x/'"},
      {"-\n", "ksi.conf:1: expected an option (e.g. -S URL or --aggr-user NAME), got '-'"},
      {"--conf other.conf\n", "ksi.conf:1: --conf cannot be used inside a configuration file"},
  };
  char msg[KL_ERR_MSG_MAX];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cli_conf_t c;
    if (parse(bad[i].text, &c, msg) != KL_EFORMAT) fail_msg("case %zu parsed: %s", i, bad[i].text);
    assert_string_equal(msg, bad[i].msg);
    cli_conf_free(&c);
  }
  /* A NUL byte: named with its line. */
  cli_conf_t c;
  kl_err_t e = {0};
  assert_int_equal(cli_conf_parse(&c, "f", "-S x\n-X \0y\n", 11, &e), KL_EFORMAT);
  assert_string_equal(e.msg, "f:2: a NUL byte (not a text file?)");
  cli_conf_free(&c);
}

static void test_lookup(void **state) {
  (void)state;
  assert_non_null(cli_conf_lookup("-S"));
  assert_non_null(cli_conf_lookup("--ext-hmac-alg"));
  assert_non_null(cli_conf_lookup("--max-in-flight"));
  assert_null(cli_conf_lookup("-SX"));
  assert_null(cli_conf_lookup("--aggr"));
  assert_null(cli_conf_lookup("S"));
  assert_null(cli_conf_lookup("-i")); /* inputs and outputs belong on the command line */
}

static void write_file(const char *path, const char *text, mode_t mode) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

/* A subcommand that takes -S, --aggr-user, --aggr-key, --cnstr (repeatable), --force, -o. */
typedef struct got {
  const char *url, *user, *key, *out;
  const char *cnstr[8];
  size_t n_cnstr;
  int cnstr_src, url_src;
  bool force;
  char url_where[200];
} got_t;

static int run(int argc, char **argv, got_t *g) {
  static const struct option longs[] = {{"aggr-user", required_argument, NULL, 'u'},
                                        {"aggr-key", required_argument, NULL, 'k'},
                                        {"cnstr", required_argument, NULL, 'n'},
                                        {"force", no_argument, NULL, 'f'},
                                        {"conf", required_argument, NULL, 'c'},
                                        {NULL, 0, NULL, 0}};
  memset(g, 0, sizeof *g);
  g->cnstr_src = -1;
  int r = cli_conf_args("test", &argc, &argv, "S:o:", longs);
  if (r) return r;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "S:o:", longs, NULL)) != -1) {
    switch (c) {
      case 'S':
        g->url = optarg;
        g->url_src = cli_source(optarg);
        snprintf(g->url_where, sizeof g->url_where, "%s", cli_where(optarg));
        break;
      case 'u': g->user = optarg; break;
      case 'k': g->key = optarg; break;
      case 'o': g->out = optarg; break;
      case 'f': g->force = true; break;
      case 'c': break;
      case 'n':
        if (cli_source(optarg) > g->cnstr_src) { /* a higher priority replaces the list */
          g->n_cnstr = 0;
          g->cnstr_src = cli_source(optarg);
        }
        g->cnstr[g->n_cnstr++] = optarg;
        break;
      default: return 3;
    }
  }
  return 0;
}

static void test_merge(void **state) {
  (void)state;
  char dir[128], env_path[200], conf_path[200], bad_path[200];
  tu_mkdtemp("cliconf", dir, sizeof dir);
  snprintf(env_path, sizeof env_path, "%s/env.conf", dir);
  snprintf(conf_path, sizeof conf_path, "%s/my.conf", dir);
  snprintf(bad_path, sizeof bad_path, "%s/bad.conf", dir);
  /* -X, -V and --max-lvl are not taken by this subcommand: ignored from files. */
  write_file(env_path,
             "-S http://env/\n--aggr-user envuser\n--aggr-key envkey\n--cnstr E=env\n-X http://ext/\n-V a.pem\n--max-lvl 3\n",
             0600);
  write_file(conf_path, "--aggr-user confuser\n--cnstr E=conf1\n--cnstr E=conf2\n", 0600);
  write_file(bad_path, "-S http://x/\n\n--nope\n", 0600);
  got_t g;

  /* $KSI_CONF alone. */
  setenv("KSI_CONF", env_path, 1);
  char *a1[] = {"test", "-o", "out", NULL};
  assert_int_equal(run(3, a1, &g), 0);
  assert_string_equal(g.url, "http://env/");
  assert_int_equal(g.url_src, CLI_SRC_ENV);
  assert_string_equal(g.user, "envuser");
  assert_string_equal(g.key, "envkey");
  assert_string_equal(g.out, "out");
  assert_int_equal(g.n_cnstr, 1);
  assert_string_equal(g.cnstr[0], "E=env");
  char want[300];
  snprintf(want, sizeof want, "%s:1: ", env_path);
  assert_string_equal(g.url_where, want);
  cli_conf_done();

  /* --conf over $KSI_CONF, the command line over both; lists replaced, not merged. */
  char *a2[] = {"test", "--conf", conf_path, "-S", "http://cmd/", NULL};
  assert_int_equal(run(5, a2, &g), 0);
  assert_string_equal(g.url, "http://cmd/");
  assert_int_equal(g.url_src, CLI_SRC_CMDLINE);
  assert_string_equal(g.url_where, "");
  assert_string_equal(g.user, "confuser");
  assert_string_equal(g.key, "envkey");
  assert_int_equal(g.n_cnstr, 2);
  assert_string_equal(g.cnstr[0], "E=conf1");
  assert_string_equal(g.cnstr[1], "E=conf2");
  assert_int_equal(g.cnstr_src, CLI_SRC_CONF);
  cli_conf_done();

  char *a3[] = {"test", "--cnstr", "E=cmd", "--conf=x", NULL};
  a3[3] = malloc(strlen(conf_path) + 8);
  sprintf(a3[3], "--conf=%s", conf_path);
  assert_int_equal(run(4, a3, &g), 0);
  assert_int_equal(g.n_cnstr, 1);
  assert_string_equal(g.cnstr[0], "E=cmd");
  free(a3[3]);
  cli_conf_done();

  /* Errors: a bad line (exit 16, configuration), a missing file, --conf twice or without a file. */
  char *a4[] = {"test", "--conf", bad_path, NULL};
  assert_int_equal(run(3, a4, &g), 16);
  cli_conf_done();
  setenv("KSI_CONF", "/nonexistent/ksi.conf", 1);
  assert_int_equal(run(3, a1, &g), 16);
  cli_conf_done();
  unsetenv("KSI_CONF");
  char *a5[] = {"test", "--conf", conf_path, "--conf", conf_path, NULL};
  assert_int_equal(run(5, a5, &g), 3);
  cli_conf_done();
  char *a6[] = {"test", "--conf", NULL};
  assert_int_equal(run(2, a6, &g), 3);
  cli_conf_done();
  /* Nothing from files: the command line as it was. */
  char *a7[] = {"test", "--force", "-S", "u", NULL};
  assert_int_equal(run(4, a7, &g), 0);
  assert_true(g.force);
  assert_string_equal(g.url, "u");
  assert_null(g.user);
  cli_conf_done();
  /* An option unknown to this subcommand on the command line is still an error. */
  char *a8[] = {"test", "-X", "u", NULL};
  opterr = 0;
  assert_int_equal(run(3, a8, &g), 3);
  cli_conf_done();
  assert_int_equal(tu_rmrf(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lines),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_lookup),
      cmocka_unit_test(test_merge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
