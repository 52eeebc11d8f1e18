/* Internal: OpenSSL's error queue as one message (the daemon and client parts both use it). */
#ifndef KL_OSSL_H
#define KL_OSSL_H

/* The oldest queued OpenSSL error as text, then the queue is cleared. The text is in a
 * thread-local buffer, valid until the next call on this thread. */
const char *kl__ossl_msg(void);

#endif
