// trawl-clickhouse runs the embedded ClickHouse (libchdb.so) as a server that
// speaks the native TCP protocol and HTTP on loopback.
//
// It lives in its own small process because ClickHouse installs its own
// signal handlers; nothing else should share an address space with it.
// libchdb's query_stable_v2 runs clickhouse-local with a command line; the
// listeners started by SYSTEM START LISTEN live as long as that call runs, so
// the last query sleeps until SIGTERM ends the process.
//
// Built and started by package chserver.
// usage: trawl-clickhouse LIBCHDB DATA_DIR TCP_PORT HTTP_PORT
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>

// The leading fields of libchdb's struct local_result_v2.
struct local_result_v2 {
	char *buf;
	size_t len;
	void *vec;
	double elapsed;
	uint64_t rows_read;
	uint64_t bytes_read;
	char *error_message;
};

typedef struct local_result_v2 *(*query_fn)(int argc, char **argv);

typedef ssize_t (*recv_fn)(int, void *, size_t, int);

// recv stands in for libc's in libchdb (the launcher is linked -rdynamic,
// so the library's calls bind to it): a connection reset by its peer reads
// as the peer's end of stream. libchdb 26.7 aborts the whole server
// ("Terminate called for uncaught exception: Connection reset by peer,
// while reading from socket") when a client resets a connection the server
// is reading from, as a killed client with unread data in its socket does;
// the same peer closing normally is handled. So a reset is reported as that
// close: for a server both mean the connection is over. See
// TestAClientThatResetsItsConnectionLeavesTheServerRunning.
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	static recv_fn real;
	if (!real)
		real = (recv_fn)dlsym(RTLD_NEXT, "recv");
	ssize_t n = real(fd, buf, len, flags);
	if (n < 0 && errno == ECONNRESET)
		return 0;
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s LIBCHDB DATA_DIR TCP_PORT HTTP_PORT\n", argv[0]);
		return 2;
	}
	// Die with whoever started us, so a killed test leaves no server behind.
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	// A server writing to a client that has gone must get EPIPE, not die:
	// clickhouse-server's daemon ignores SIGPIPE, clickhouse-local (what
	// libchdb runs) neither ignores nor catches it, and a process killed by
	// it leaves no log. Servers under CI and soaks died without a log as
	// clients went away; this is the likeliest cause, not a proven one.
	signal(SIGPIPE, SIG_IGN);
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "trawl-clickhouse: load %s: %s\n", argv[1], dlerror());
		return 1;
	}
	query_fn query = (query_fn)dlsym(lib, "query_stable_v2");
	if (!query) {
		fprintf(stderr, "trawl-clickhouse: %s has no query_stable_v2: %s\n", argv[1], dlerror());
		return 1;
	}

	char tcp[64], http[64];
	snprintf(tcp, sizeof tcp, "--tcp_port=%s", argv[3]);
	snprintf(http, sizeof http, "--http_port=%s", argv[4]);
	char *args[] = {
		"clickhouse",
		"--path", argv[2],
		"--multiquery",
		/* Only what ends the server (a crash) reaches stderr: tests keep
		 * it to say why a server died under them; failed queries already
		 * tell their clients. */
		"--log-level=fatal",
		"--query",
		"SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; "
		"SELECT sleepEachRow(1) FROM numbers(1000000000) "
		"SETTINGS max_block_size = 1, max_execution_time = 0 FORMAT Null",
		"--",
		tcp,
		http,
		"--listen_host=127.0.0.1",
		"--logger.console=1",
		NULL,
	};
	struct local_result_v2 *res = query((int)(sizeof args / sizeof args[0]) - 1, args);
	if (res && res->error_message) {
		fprintf(stderr, "trawl-clickhouse: %s\n", res->error_message);
		return 1;
	}
	return 0;
}
