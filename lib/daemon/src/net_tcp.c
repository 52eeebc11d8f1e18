/* Socket options for links between nodes (net.h, kl_net_link_liveness). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "keyless/net.h"

void kl_net_link_liveness(uv_tcp_t *t, unsigned timeout_ms) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)t, &fd) != 0) return; /* no socket yet: nothing to tune */
  unsigned v = timeout_ms;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
}
