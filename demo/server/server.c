/* echod: a small threaded TCP server on 127.0.0.1, one request per connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "proto.h"

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char line[256], out[512];
	ssize_t n = read(fd, line, sizeof(line) - 1);

	if (n > 0) {
		line[n] = '\0';
		line[strcspn(line, "\r\n")] = '\0';
		size_t len = handle_request(line, out, sizeof(out));
		if (write(fd, out, len) < 0)
			perror("write");
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 0;
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t alen = sizeof(addr);

	signal(SIGPIPE, SIG_IGN);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 128) < 0) {
		perror("echod: bind/listen");
		return 1;
	}
	getsockname(lfd, (struct sockaddr *)&addr, &alen);
	printf("echod: listening on 127.0.0.1:%d pid=%d\n", ntohs(addr.sin_port), (int)getpid());
	fflush(stdout);
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		pthread_t t;
		if (fd < 0)
			continue;
		if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
