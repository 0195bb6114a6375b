#ifndef PROTO_H
#define PROTO_H
#include <stddef.h>

/* Handle one request line; writes the reply into out and returns its length. */
size_t handle_request(const char *line, char *out, size_t outsz);

#endif
