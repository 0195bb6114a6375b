/* echod protocol: one request per connection.
 *   PING              -> PONG
 *   ECHO LEN TEXT     -> the first LEN bytes of TEXT
 *   STATS             -> requests served so far
 */
#include <stdio.h>
#include <string.h>
#include "proto.h"

/* Per-server state: the echo scratch buffer sits right before the API key. */
static struct {
	char payload[32];
	char api_key[32];
} session = { "", "api-key=7f3c9a1e5b2d4086" };

static unsigned long requests;

static size_t reply(char *out, size_t outsz, const char *tag, const char *data, size_t len)
{
	size_t n = (size_t)snprintf(out, outsz, "%s ", tag);
	for (size_t i = 0; i < len && n + 2 < outsz; i++)
		out[n++] = (data[i] >= 32 && data[i] < 127) ? data[i] : '.';
	out[n++] = '\n';
	return n;
}

static size_t handle_echo(const char *args, char *out, size_t outsz)
{
	unsigned int len;

	memset(session.payload, 0, sizeof(session.payload));
	if (sscanf(args, "%u %31s", &len, session.payload) != 2)
		return reply(out, outsz, "ERR", "usage: ECHO LEN TEXT", 20);
	/* Trusts the client's LEN: reads past the payload into the key. */
	if (len > sizeof(session))
		len = sizeof(session);
	return reply(out, outsz, "ECHO", session.payload, len);
}

size_t handle_request(const char *line, char *out, size_t outsz)
{
	requests++;
	if (strncmp(line, "PING", 4) == 0)
		return reply(out, outsz, "PONG", "", 0);
	if (strncmp(line, "ECHO ", 5) == 0)
		return handle_echo(line + 5, out, outsz);
	if (strncmp(line, "STATS", 5) == 0) {
		char buf[32];
		int n = snprintf(buf, sizeof(buf), "%lu", requests);
		return reply(out, outsz, "STATS", buf, (size_t)n);
	}
	return reply(out, outsz, "ERR", "unknown request", 15);
}
