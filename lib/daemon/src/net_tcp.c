/* Socket options for links between nodes (net.h, kl_net_link_liveness) and for listeners that
 * share a port (kl_net_bind_reuseport). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyless/net.h"

void kl_net_link_liveness(uv_tcp_t *t, unsigned timeout_ms) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)t, &fd) != 0) return; /* no socket yet: nothing to tune */
  unsigned v = timeout_ms;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
}

int kl_net_bind_reuseport(uv_tcp_t *t, const struct sockaddr *sa) {
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
  if (fd < 0) return uv_translate_sys_error(errno);
  int rc = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) ||
      bind(fd, sa, len))
    rc = uv_translate_sys_error(errno);
  else
    rc = uv_tcp_open(t, fd); /* sets it non-blocking */
  if (rc) close(fd);
  return rc;
}
