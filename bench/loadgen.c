/*
 * The benchmark's load generator: one thread, epoll, libc only.
 *
 * It speaks just enough of each wire to drive a server: a WebSocket client (masked text
 * frames, mask key 0), a plain HTTP/1.1 stream reader (SSE, NDJSON, forever iframe), the
 * pushwire long-poll / polling loops, the Engine.IO v4 polling loop, and pushwire's TCP frames.
 * Application messages are found by a marker, not by parsing each framing: every payload
 * is "#BM<seq>,<monotonic ns>;" padded with 'x', so the same scanner reads a WebSocket frame,
 * an SSE event, a JSON envelope or a Socket.IO packet. Sequence numbers check that every
 * connection got every message once, in order; the timestamp gives publish->receive latency
 * (CLOCK_MONOTONIC is shared by every process of the machine).
 *
 * Modes:
 *   fanout   N subscribers and one WebSocket publisher. The publisher keeps at most --window
 *            messages not yet delivered to every subscriber (self-clocked: delivery keeps up).
 *   echo     N connections, each sends a message and waits for it to come back (closed loop).
 *   connect  N handshakes, --inflight at a time; connections stay open until told to close.
 *
 * Fan-out with --hold S marks "ready" once every subscriber is open, "open" once each has
 * had a first message, then holds them idle for S seconds before publishing; --messages M stops after M messages. With --window 1
 * each message is one broadcast: "broadcast_ms" reports, per message, the time from its
 * publication until the last subscriber had it.
 *
 * WebSocket pings from the server are answered with pongs, so connections may stay open past
 * the server's keepalive (ping_interval + ping_timeout). --sources K binds connection i to the
 * loopback address 127.0.1.(1 + i % K) before connecting: each source address has its own
 * ephemeral port range, so one machine can open more connections to one port than the range
 * holds (28,232 by default). The soft open-file limit is raised to the hard one at start.
 *
 * With --sync the generator prints "MARK start" / "MARK end" (and "MARK open" in connect mode)
 * and waits for a line on stdin, so the caller can sample the server's CPU and RSS there.
 * The result is one JSON object on stdout.
 *
 * Fan-out with --procs K splits the subscribers over K processes (this one, with the
 * publisher, and K-1 forked children), for a machine with cores to spare: they share the
 * per-message delivery counts that clock the publisher through anonymous shared memory, and
 * each reports its figures there when it finishes. loadgen_cpu_measured_s is then the busiest
 * process's CPU time, the figure that says whether the load generator was the limit.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum proto { P_WS, P_STREAM, P_PWPOLL, P_SIOPOLL, P_TCP };
enum state { S_CONNECTING, S_HEADERS, S_OPEN, S_BODY, S_WAIT, S_CLOSED };

#define MAX_INIT 8
#define RING 65536
#define TAIL 64
#define MAX_PROCS 64
#define HIST 100001
#define HIST_SLOW 10001

typedef struct {
    int fd;
    int role; /* 0 subscriber / echo / connect, 1 publisher */
    enum state st;
    int ready;
    int step;             /* poll protocols: 0 handshake, 1 sio POST 40, 2+ polls */
    long body_left;       /* bytes of the current response body still to read; -1: chunked */
    unsigned expect;      /* next sequence number expected (0 before priming) */
    unsigned sent_seq;    /* echo: last sequence number sent */
    unsigned replies;     /* echo: replies received (acknowledgements) */
    char *pend;           /* unconsumed bytes */
    int pend_len, pend_cap;
    char *out;            /* bytes not yet written */
    int out_len, out_cap;
    int want_out;
    char session[64];     /* pushwire session id / Engine.IO sid */
    char secret[64];      /* pushwire session's resume secret (polls show it in a header) */
    char cursor[24];
    /* the server's WebSocket frames, walked to answer pings: bytes of pend already walked,
       the current frame's header (while in_payload is 0) or payload bytes still to come */
    int walked, fhead_len, in_payload, fopcode, ping_len;
    uint64_t fleft;
    unsigned char fhead[14];
    unsigned char ping[125];
    uint64_t due_ns;      /* polling: when to poll again */
    uint64_t sent_ns;     /* echo: when the message in flight was sent */
} conn_t;

/* options */
static const char *host = "127.0.0.1";
static int port, pub_port, mode_fanout, mode_echo, mode_connect;
static int nconns = 100, inflight = 100, size = 64, window = 16, sync_marks = 0, procs = 1;
static double duration = 5.0, drain_s = 15.0, timeout_s = 60.0, hold_s = 0.0;
static int sources = 0;        /* --sources K: bind to 127.0.1.(1 + i % K) */
static unsigned max_messages;  /* --messages M: stop publishing after M (0: by --duration) */
static int poll_interval_ms = 50, ack_every = 0, engineio_pong = 0;
static enum proto sub_proto = P_WS;
static const char *sub_path = "/", *sub_subprotocol, *sub_ready, *ack_tmpl;
/* --path-file: one subscriber path per line, connection i takes line i (modulo their count):
 * a credential per connection, where the server checks each one it has not seen. */
static char **sub_paths;
static int n_sub_paths;
static const char *sub_init[MAX_INIT];
static int n_sub_init;
static const char *pub_path = "/", *pub_subprotocol, *pub_ready;
static const char *pub_init[MAX_INIT];
static int n_pub_init;
static const char *msg_prefix = "", *msg_suffix = "";

/* What every process of one run shares (anonymous shared memory, set up before forking). */
typedef struct {
    unsigned counts[RING]; /* fanout: deliveries of each message in flight, over all processes */
    int ready, primed, closed_early; /* over all processes */
    int phase;                       /* 0 setting up, 1 measuring, 2 finished */
    unsigned published;              /* the last message published, once publishing stopped */
    uint64_t pub_ns[RING];           /* fanout: when each message in flight was published */
    uint64_t done_ns[RING];          /* fanout: when its last subscriber had it */
} shared_t;

/* One process's figures, written to shared memory when it finishes. */
typedef struct {
    uint64_t deliveries, dups, reorders, lost_gaps, bytes_in, bytes_out, requests, lat_n;
    int errors;
    double cpu_measured;
    char first_error[256];
    uint64_t hist[HIST], hist_slow[HIST_SLOW];
} stats_t;

/* state */
static int ep;
static conn_t *conns;
static int nlocal; /* connections this process drives: conns[0..nlocal) */
static conn_t *pub;
static int n_ready, n_open, n_started, n_closed_early;
static uint64_t t0;
static int measuring;
static unsigned published, fully; /* fanout: last published / last delivered to all */
static shared_t *sh;
static stats_t *all_stats, *st; /* every process's slot; this process's */
static char rbuf[1 << 20];
static int first; /* the global index of this process's first subscriber */
/* fanout, the publisher's process: each message's time until every subscriber had it */
static uint64_t *full_ns;
static size_t n_full, cap_full;
static uint64_t read_ns; /* when the bytes being scanned arrived */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void note_error(const char *fmt, ...) {
    st->errors++;
    if (st->first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->first_error, sizeof st->first_error, fmt, ap);
    va_end(ap);
}

static void closed_early(void) {
    n_closed_early++;
    __atomic_add_fetch(&sh->closed_early, 1, __ATOMIC_RELAXED);
}

/* a connection of any process closed before the end: the run stops */
static int any_closed_early(void) { return __atomic_load_n(&sh->closed_early, __ATOMIC_RELAXED); }

static void record_latency(uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us < HIST) st->hist[us]++;
    else if (us / 1000 < HIST_SLOW - 1) st->hist_slow[us / 1000]++;
    else st->hist_slow[HIST_SLOW - 1]++;
    st->lat_n++;
}

/* over the histograms of every process, summed into slot 0 */
static double percentile(const stats_t *s, double p) {
    if (!s->lat_n) return 0;
    uint64_t want = (uint64_t)(p * (double)s->lat_n), seen = 0;
    if (want >= s->lat_n) want = s->lat_n - 1;
    for (int i = 0; i < HIST; i++) {
        seen += s->hist[i];
        if (seen > want) return i;
    }
    for (int i = 0; i < HIST_SLOW; i++) {
        seen += s->hist_slow[i];
        if (seen > want) return (double)i * 1000.0;
    }
    return 1e10;
}

/* ---- output buffer ---- */

static void mod_events(conn_t *c) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush_out(conn_t *c) {
    while (c->out_len > 0) {
        ssize_t n = write(c->fd, c->out, (size_t)c->out_len);
        if (n < 0) {
            if (errno == EAGAIN) break;
            note_error("write: %s", strerror(errno));
            c->out_len = 0;
            break;
        }
        if (measuring && c->role == 0) st->bytes_out += (uint64_t)n;
        memmove(c->out, c->out + n, (size_t)(c->out_len - n));
        c->out_len -= (int)n;
    }
    int want = c->out_len > 0;
    if (want != c->want_out) {
        c->want_out = want;
        mod_events(c);
    }
}

static void queue_out(conn_t *c, const char *data, int len) {
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2 + 256;
        c->out = realloc(c->out, (size_t)c->out_cap);
    }
    memcpy(c->out + c->out_len, data, (size_t)len);
    c->out_len += len;
}

static void queue_ws_text(conn_t *c, const char *data, int len) {
    char head[14];
    int h = 0;
    head[h++] = (char)0x81;
    if (len < 126) head[h++] = (char)(0x80 | len);
    else if (len < 65536) {
        head[h++] = (char)(0x80 | 126);
        head[h++] = (char)(len >> 8);
        head[h++] = (char)len;
    } else fail("message too long");
    memset(head + h, 0, 4); /* mask key 0: the payload goes out as it is */
    h += 4;
    queue_out(c, head, h);
    queue_out(c, data, len);
}

static void queue_tcp_frame(conn_t *c, const char *data, int len) {
    unsigned n = (unsigned)len + 1;
    char head[5] = {(char)(n >> 24), (char)(n >> 16), (char)(n >> 8), (char)n, 1};
    queue_out(c, head, 5);
    queue_out(c, data, len);
}

/* one application message: prefix + "#BM<seq>,<ns>;" padded with 'x' to `size` + suffix */
static int build_message(char *buf, unsigned seq) {
    int n = sprintf(buf, "%s", msg_prefix);
    int m = sprintf(buf + n, "#BM%u,%llu;", seq, (unsigned long long)now_ns());
    while (m < size) buf[n + m++] = 'x';
    n += m;
    n += sprintf(buf + n, "%s", msg_suffix);
    return n;
}

/* ---- the server's WebSocket frames ---- */

static void frame_done(conn_t *c) {
    if (c->fopcode != 9) return;
    /* a ping: the pong carries its payload (masked, key 0) */
    char head[6] = {(char)0x8A, (char)(0x80 | c->ping_len), 0, 0, 0, 0};
    queue_out(c, head, 6);
    queue_out(c, (const char *)c->ping, c->ping_len);
    c->ping_len = 0;
    flush_out(c);
}

/* Walks the frames in data[0..len), bytes never walked before: only pings need an answer. */
static void walk_frames(conn_t *c, const unsigned char *data, int len) {
    int i = 0;
    while (i < len) {
        if (c->in_payload) {
            uint64_t take = c->fleft < (uint64_t)(len - i) ? c->fleft : (uint64_t)(len - i);
            if (c->fopcode == 9) {
                int room = (int)sizeof c->ping - c->ping_len;
                int n = take < (uint64_t)room ? (int)take : room;
                memcpy(c->ping + c->ping_len, data + i, (size_t)n);
                c->ping_len += n;
            }
            c->fleft -= take;
            i += (int)take;
            if (!c->fleft) {
                c->in_payload = 0;
                frame_done(c);
            }
            continue;
        }
        c->fhead[c->fhead_len++] = data[i++];
        if (c->fhead_len < 2) continue;
        int len7 = c->fhead[1] & 0x7f;
        int need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c->fhead[1] & 0x80 ? 4 : 0);
        if (c->fhead_len < need) continue;
        uint64_t n = (uint64_t)len7;
        if (len7 == 126) n = (uint64_t)c->fhead[2] << 8 | c->fhead[3];
        else if (len7 == 127)
            for (int k = 0; k < 8; k++) n = n << 8 | c->fhead[2 + k];
        c->fopcode = c->fhead[0] & 0x0f;
        c->fhead_len = 0;
        c->fleft = n;
        c->ping_len = 0;
        if (n) c->in_payload = 1;
        else frame_done(c);
    }
}

/* ---- connections ---- */

static void send_request(conn_t *c, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    queue_out(c, buf, n);
    if (measuring && c->role == 0) st->requests++;
}

static void url_encode(char *dst, const char *src) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *src; src++) {
        unsigned char ch = (unsigned char)*src;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.')
            *dst++ = (char)ch;
        else {
            *dst++ = '%';
            *dst++ = hex[ch >> 4];
            *dst++ = hex[ch & 15];
        }
    }
    *dst = 0;
}

static void load_paths(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) fail("--path-file %s: %s", file, strerror(errno));
    char line[4096];
    int cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        if (!len) continue;
        line[len] = 0;
        if (n_sub_paths == cap) {
            cap = cap ? cap * 2 : 1024;
            sub_paths = realloc(sub_paths, (size_t)cap * sizeof *sub_paths);
            if (!sub_paths) fail("out of memory");
        }
        sub_paths[n_sub_paths++] = strdup(line);
    }
    fclose(f);
    if (!n_sub_paths) fail("--path-file %s: no path in it", file);
}

static const char *sep(const char *path) { return strchr(path, '?') ? "&" : "?"; }

static void start_request(conn_t *c) {
    const char *path = c->role ? pub_path
                       : n_sub_paths ? sub_paths[(c - conns) % n_sub_paths] : sub_path;
    enum proto p = c->role ? P_WS : sub_proto;
    const char *subprotocol = c->role ? pub_subprotocol : sub_subprotocol;
    c->st = S_HEADERS;
    if (p == P_WS) {
        char extra[256] = "";
        if (subprotocol) snprintf(extra, sizeof extra, "Sec-WebSocket-Protocol: %s\r\n", subprotocol);
        send_request(c,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, host, c->role && pub_port ? pub_port : port, extra);
    } else if (p == P_STREAM) {
        send_request(c, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);
    } else if (p == P_TCP) {
        c->st = S_OPEN;
        for (int i = 0; i < n_sub_init; i++) queue_tcp_frame(c, sub_init[i], (int)strlen(sub_init[i]));
        if (!sub_ready) {
            c->ready = 1;
            n_ready++;
        }
    } else if (p == P_PWPOLL) {
        if (c->step == 0) {
            char enc[1024];
            url_encode(enc, n_sub_init ? sub_init[0] : "{\"type\":\"hello\"}");
            send_request(c, "GET %s%shello=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, sep(path), enc,
                         host, port);
        } else {
            send_request(c,
                         "GET %s%scursor=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Pushwire-Session: %s %s\r\n\r\n",
                         path, sep(path), c->cursor, host, port, c->session, c->secret);
        }
    } else if (p == P_SIOPOLL) {
        if (c->step == 0)
            send_request(c, "GET %s%sEIO=4&transport=polling HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path,
                         sep(path), host, port);
        else if (c->step == 1)
            send_request(c,
                         "POST %s%sEIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\n\r\n40",
                         path, sep(path), c->session, host, port);
        else
            send_request(c, "GET %s%sEIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                         path, sep(path), c->session, host, port);
    }
    flush_out(c);
}

static void open_conn(conn_t *c, int role) {
    memset(c, 0, sizeof *c);
    c->role = role;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Closing with a reset leaves no TIME_WAIT: runs after runs do not exhaust the ports. */
    struct linger lin = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    if (sources > 0) {
        int i = role ? 0 : first + (int)(c - conns);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | (1u << 8) | (unsigned)(1 + i % sources));
        /* the port is picked at connect(), unique per (source, destination) pair */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) fail("bind: %s", strerror(errno));
    }
    int to_port = role && pub_port ? pub_port : port;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to_port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    c->st = S_CONNECTING;
    c->want_out = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
        fail("connect: %s", strerror(errno));
    n_started++;
}

static void close_conn(conn_t *c) {
    if (c->st == S_CLOSED) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->st = S_CLOSED;
}

static int poll_loop(int timeout_ms);

static void mark(const char *name) {
    if (!sync_marks) return;
    printf("MARK %s\n", name);
    fflush(stdout);
    /* held connections keep answering pings while the caller samples (--hold) */
    while (hold_s > 0) {
        struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(&in, 1, 0) > 0) break;
        poll_loop(5);
    }
    char line[16];
    if (!fgets(line, sizeof line, stdin)) exit(3);
}

static void send_echo(conn_t *c) {
    char buf[512];
    c->sent_seq++;
    c->sent_ns = now_ns();
    int n = build_message(buf, c->sent_seq);
    if (sub_proto == P_TCP) queue_tcp_frame(c, buf, n);
    else queue_ws_text(c, buf, n);
    if (ack_every && ack_tmpl && c->replies && c->replies % (unsigned)ack_every == 0) {
        int m = snprintf(buf, sizeof buf, ack_tmpl, c->replies);
        if (sub_proto == P_TCP) queue_tcp_frame(c, buf, m);
        else queue_ws_text(c, buf, m);
    }
    flush_out(c);
}

static void became_ready(conn_t *c) {
    c->ready = 1;
    if (c->role == 0) {
        n_ready++;
        __atomic_add_fetch(&sh->ready, 1, __ATOMIC_RELAXED);
    }
    if (mode_echo && measuring) send_echo(c);
}

/* fanout bookkeeping: message `seq` reached one more subscriber (once per subscriber) */
static void delivered(unsigned seq) {
    if (__atomic_add_fetch(&sh->counts[seq % RING], 1, __ATOMIC_RELAXED) == (unsigned)nconns)
        __atomic_store_n(&sh->done_ns[seq % RING], read_ns, __ATOMIC_RELAXED);
}

static void record_full(unsigned seq) {
    if (n_full == cap_full) {
        cap_full = cap_full ? cap_full * 2 : 1024;
        full_ns = realloc(full_ns, cap_full * sizeof *full_ns);
        if (!full_ns) fail("out of memory");
    }
    uint64_t done = __atomic_load_n(&sh->done_ns[seq % RING], __ATOMIC_RELAXED);
    full_ns[n_full++] = done - sh->pub_ns[seq % RING];
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double full_ms(double p) {
    if (!n_full) return 0;
    size_t k = (size_t)(p * (double)n_full);
    if (k >= n_full) k = n_full - 1;
    return (double)full_ns[k] / 1e6;
}

/* the publisher's process: move `fully` past every message that reached all subscribers */
static void advance_fully(void) {
    while (fully < published &&
           __atomic_load_n(&sh->counts[(fully + 1) % RING], __ATOMIC_RELAXED) == (unsigned)nconns) {
        fully++;
        if (measuring) record_full(fully);
        __atomic_store_n(&sh->counts[fully % RING], 0, __ATOMIC_RELAXED);
    }
}

static void on_marker(conn_t *c, unsigned seq, uint64_t ts) {
    if (c->role == 1) return; /* the publisher's own copy */
    if (mode_fanout) {
        if (seq == 0) {
            if (!c->expect) {
                c->expect = 1;
                __atomic_add_fetch(&sh->primed, 1, __ATOMIC_RELAXED);
            }
            return;
        }
        if (!c->expect) c->expect = 1; /* priming missed but the stream started: check from 1 */
        if (seq == c->expect) {
            c->expect++;
            st->deliveries++;
            record_latency(read_ns - ts);
            delivered(seq);
        } else if (seq < c->expect) {
            st->dups++;
        } else {
            st->lost_gaps += seq - c->expect;
            st->reorders++;
            c->expect = seq + 1;
            st->deliveries++;
            delivered(seq);
        }
    } else if (mode_echo) {
        if (seq != c->sent_seq) {
            if (seq < c->sent_seq) st->dups++;
            else st->reorders++;
            return;
        }
        c->replies++;
        st->deliveries++;
        record_latency(read_ns - ts);
        if (measuring) send_echo(c);
    }
}

/* Finds every complete marker in buf[0..len); returns how many bytes may be dropped. */
static int scan(conn_t *c, char *buf, int len) {
    int consumed = 0;
    char *p = buf, *end = buf + len;
    /* '#' starts a marker and appears nowhere else in the payloads: memchr finds it fastest */
    while ((p = memchr(p, '#', (size_t)(end - p))) != NULL) {
        if (end - p < 3) break;
        if (p[1] != 'B' || p[2] != 'M') { p++; continue; }
        char *q = p + 3;
        unsigned seq = 0;
        uint64_t ts = 0;
        while (q < end && *q >= '0' && *q <= '9') seq = seq * 10 + (unsigned)(*q++ - '0');
        if (q >= end) break;
        if (*q++ != ',') { p += 3; continue; }
        while (q < end && *q >= '0' && *q <= '9') ts = ts * 10 + (uint64_t)(*q++ - '0');
        if (q >= end) break;
        if (*q != ';') { p += 3; continue; }
        on_marker(c, seq, ts);
        p = q + 1;
        consumed = (int)(p - buf);
    }
    if (len - consumed > TAIL) consumed = len - TAIL;
    return consumed;
}

static void check_ready(conn_t *c, const char *buf, int len) {
    const char *marker = c->role ? pub_ready : sub_ready;
    if (c->ready || !marker) return;
    if (memmem(buf, (size_t)len, marker, strlen(marker))) became_ready(c);
}

static void copy_field(char *dst, int cap, const char *buf, int len, const char *key) {
    const char *p = memmem(buf, (size_t)len, key, strlen(key));
    if (!p) return;
    p += strlen(key);
    int i = 0;
    while (p < buf + len && *p != '"' && *p != '\r' && *p != '\n' && i < cap - 1) dst[i++] = *p++;
    dst[i] = 0;
}

static long header_value(const char *head, int len, const char *name) {
    const char *p = memmem(head, (size_t)len, name, strlen(name));
    if (!p) return -1;
    return strtol(p + strlen(name), NULL, 10);
}

/* A poll response's body is complete: read it, then ask again. */
static void poll_body_done(conn_t *c, char *body, int len) {
    if (sub_proto == P_PWPOLL) {
        if (c->step == 0) {
            copy_field(c->session, sizeof c->session, body, len, "\"session\":\"");
            copy_field(c->secret, sizeof c->secret, body, len, "\"resume\":\"");
        }
        check_ready(c, body, len);
        scan(c, body, len);
        c->step = 2;
        c->due_ns = now_ns() + (uint64_t)poll_interval_ms * 1000000ull;
    } else {
        if (c->step == 0) copy_field(c->session, sizeof c->session, body, len, "\"sid\":\"");
        check_ready(c, body, len);
        scan(c, body, len);
        c->step++;
        c->due_ns = now_ns();
    }
    if (sub_proto == P_PWPOLL && poll_interval_ms > 0 && c->step >= 2) {
        c->st = S_WAIT;
    } else {
        start_request(c);
    }
}

static char dechunked[1 << 19];
static int dechunked_len;

/* Decodes a whole chunked body from buf; returns the bytes it took, or -1 if incomplete. */
static int dechunk(const char *buf, int len) {
    int pos = 0;
    dechunked_len = 0;
    for (;;) {
        const char *eol = memmem(buf + pos, (size_t)(len - pos), "\r\n", 2);
        if (!eol) return -1;
        long n = strtol(buf + pos, NULL, 16);
        pos = (int)(eol - buf) + 2;
        if (n == 0) return pos + 2 <= len ? pos + 2 : -1; /* the empty line after the last chunk */
        if (pos + n + 2 > len) return -1;
        if (dechunked_len + n > (long)sizeof dechunked) fail("chunked body too large");
        memcpy(dechunked + dechunked_len, buf + pos, (size_t)n);
        dechunked_len += (int)n;
        pos += (int)n + 2;
    }
}

static void process(conn_t *c, char *buf, int len) {
    enum proto p = c->role ? P_WS : sub_proto;
    for (;;) {
        if (c->st == S_HEADERS) {
            char *end = memmem(buf, (size_t)len, "\r\n\r\n", 4);
            if (!end) break;
            int hlen = (int)(end - buf) + 4;
            int status = len > 12 ? atoi(buf + 9) : 0;
            if ((p == P_WS && status != 101) || (p != P_WS && status != 200)) {
                note_error("HTTP status %d on %s", status, c->role ? pub_path : sub_path);
                close_conn(c);
                closed_early();
                return;
            }
            if (p == P_PWPOLL) {
                char cur[24] = "";
                copy_field(cur, sizeof cur, buf, hlen, "Pushwire-Cursor: ");
                if (!cur[0]) copy_field(cur, sizeof cur, buf, hlen, "pushwire-cursor: ");
                if (cur[0]) strcpy(c->cursor, cur);
            }
            if (p == P_PWPOLL || p == P_SIOPOLL) {
                long cl = header_value(buf, hlen, "Content-Length: ");
                if (cl < 0) cl = header_value(buf, hlen, "content-length: ");
                if (cl < 0 && (memmem(buf, (size_t)hlen, "chunked", 7) == NULL)) {
                    note_error("poll response without Content-Length or chunked encoding");
                    close_conn(c);
                    return;
                }
                c->body_left = cl;
                c->st = S_BODY;
            } else {
                c->st = S_OPEN;
                n_open++;
                const char **init = c->role ? pub_init : sub_init;
                int n_init = c->role ? n_pub_init : n_sub_init;
                if (p == P_WS)
                    for (int i = 0; i < n_init; i++) queue_ws_text(c, init[i], (int)strlen(init[i]));
                flush_out(c);
                if (!(c->role ? pub_ready : sub_ready)) became_ready(c);
            }
            buf += hlen;
            len -= hlen;
            continue;
        }
        if (c->st == S_BODY && c->body_left < 0) {
            int used = dechunk(buf, len);
            if (used < 0) break;
            poll_body_done(c, dechunked, dechunked_len);
            buf += used;
            len -= used;
            if (c->st == S_CLOSED) return;
            continue;
        }
        if (c->st == S_BODY) {
            if (len < c->body_left) break;
            int blen = (int)c->body_left;
            poll_body_done(c, buf, blen);
            buf += blen;
            len -= blen;
            if (c->st == S_CLOSED) return;
            continue;
        }
        if (c->st == S_OPEN) {
            if (p == P_WS && c->walked < len) walk_frames(c, (unsigned char *)buf + c->walked, len - c->walked);
            /* Engine.IO pings ("2" in a 1-byte text frame) need a pong ("3"), or the server
               drops the connection after pingInterval + pingTimeout. */
            if (engineio_pong && p == P_WS && memmem(buf, (size_t)len, "\x81\x01" "2", 3)) {
                queue_ws_text(c, "3", 1);
                flush_out(c);
            }
            check_ready(c, buf, len);
            int used = scan(c, buf, len);
            buf += used;
            len -= used;
            c->walked = len; /* what is kept was walked */
        }
        break;
    }
    /* keep what is left for the next read */
    if (len > c->pend_cap) {
        c->pend_cap = len * 2;
        c->pend = realloc(c->pend, (size_t)c->pend_cap);
    }
    memmove(c->pend, buf, (size_t)len);
    c->pend_len = len;
}

static void on_readable(conn_t *c) {
    for (int round = 0; round < 4; round++) {
        int keep = c->pend_len;
        if (keep > (int)sizeof rbuf / 2) fail("a response over %d bytes", (int)sizeof rbuf / 2);
        memcpy(rbuf, c->pend, (size_t)keep);
        ssize_t n = read(c->fd, rbuf + keep, sizeof rbuf - (size_t)keep);
        if (n < 0) {
            if (errno == EAGAIN) return;
            note_error("read: %s", strerror(errno));
            close_conn(c);
            closed_early();
            return;
        }
        if (n == 0) {
            closed_early();
            note_error("server closed a connection (%s)", c->role ? "publisher" : "client");
            close_conn(c);
            return;
        }
        if (measuring && c->role == 0) st->bytes_in += (uint64_t)n;
        read_ns = now_ns();
        process(c, rbuf, keep + (int)n);
        if (c->st == S_CLOSED || n < (ssize_t)(sizeof rbuf - (size_t)keep)) return;
    }
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->st == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            note_error("connect: %s", strerror(err));
            close_conn(c);
            closed_early();
            return;
        }
        c->want_out = 0;
        mod_events(c);
        start_request(c);
        return;
    }
    if (events & EPOLLOUT) flush_out(c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

static int poll_loop(int timeout_ms) {
    static struct epoll_event evs[4096];
    int n = epoll_wait(ep, evs, 4096, timeout_ms);
    for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    if (sub_proto == P_PWPOLL && poll_interval_ms > 0) {
        uint64_t now = now_ns();
        for (int i = 0; i < nlocal; i++)
            if (conns[i].st == S_WAIT && conns[i].due_ns <= now) start_request(&conns[i]);
    }
    return n;
}

static double elapsed(void) { return (double)(now_ns() - t0) / 1e9; }

static void publish(unsigned seq) {
    char buf[512];
    sh->pub_ns[seq % RING] = now_ns();
    int n = build_message(buf, seq);
    queue_ws_text(pub, buf, n);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Opens every connection, at most `inflight` handshakes at a time, until all are ready. */
static int open_all(int role_pub_first) {
    if (role_pub_first) {
        pub = calloc(1, sizeof *pub);
        open_conn(pub, 1);
    }
    int next = 0;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    while (n_ready < nlocal || (pub && !pub->ready)) {
        while (next < nlocal && next - n_ready - n_closed_early < inflight) open_conn(&conns[next++], 0);
        poll_loop(5);
        if (any_closed_early() || now_ns() > deadline) return -1;
    }
    return 0;
}

static void usage(void) {
    fail("usage: loadgen --mode fanout|echo|connect --port P [--conns N] [--proto ws|stream|pwpoll|"
         "siopoll|tcp] [--path P] [--path-file F] [--subprotocol S] [--init MSG]... [--ready STR] [--pub-path P] "
         "[--pub-subprotocol S] [--pub-init MSG]... [--pub-ready STR] [--prefix S] [--suffix S] "
         "[--pub-port P] [--size N] [--duration S] [--window W] [--inflight K] [--poll-interval-ms MS] "
         "[--ack-every N --ack-template FMT] [--timeout S] [--procs K] [--sources K] [--hold S] "
         "[--messages M] [--sync]");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
        if (strcmp(a, "--sync") == 0) sync_marks = 1;
        else if (strcmp(a, "--engineio-pong") == 0) engineio_pong = 1;
        else if (OPT("--mode")) {
            mode_fanout = !strcmp(v, "fanout");
            mode_echo = !strcmp(v, "echo");
            mode_connect = !strcmp(v, "connect");
        } else if (OPT("--host")) host = v;
        else if (OPT("--port")) port = atoi(v);
        else if (OPT("--pub-port")) pub_port = atoi(v);
        else if (OPT("--conns")) nconns = atoi(v);
        else if (OPT("--procs")) procs = atoi(v);
        else if (OPT("--inflight")) inflight = atoi(v);
        else if (OPT("--size")) size = atoi(v);
        else if (OPT("--window")) window = atoi(v);
        else if (OPT("--duration")) duration = atof(v);
        else if (OPT("--drain")) drain_s = atof(v);
        else if (OPT("--timeout")) timeout_s = atof(v);
        else if (OPT("--hold")) hold_s = atof(v);
        else if (OPT("--messages")) max_messages = (unsigned)atoi(v);
        else if (OPT("--sources")) sources = atoi(v);
        else if (OPT("--poll-interval-ms")) poll_interval_ms = atoi(v);
        else if (OPT("--ack-every")) ack_every = atoi(v);
        else if (OPT("--ack-template")) ack_tmpl = v;
        else if (OPT("--proto")) {
            sub_proto = !strcmp(v, "ws") ? P_WS : !strcmp(v, "stream") ? P_STREAM
                      : !strcmp(v, "pwpoll") ? P_PWPOLL : !strcmp(v, "siopoll") ? P_SIOPOLL
                      : !strcmp(v, "tcp") ? P_TCP : (usage(), P_WS);
        } else if (OPT("--path")) sub_path = v;
        else if (OPT("--path-file")) load_paths(v);
        else if (OPT("--subprotocol")) sub_subprotocol = v;
        else if (OPT("--ready")) sub_ready = v;
        else if (OPT("--init")) { if (n_sub_init < MAX_INIT) sub_init[n_sub_init++] = v; }
        else if (OPT("--pub-path")) pub_path = v;
        else if (OPT("--pub-subprotocol")) pub_subprotocol = v;
        else if (OPT("--pub-ready")) pub_ready = v;
        else if (OPT("--pub-init")) { if (n_pub_init < MAX_INIT) pub_init[n_pub_init++] = v; }
        else if (OPT("--prefix")) msg_prefix = v;
        else if (OPT("--suffix")) msg_suffix = v;
        else usage();
    }
    if (!port || !(mode_fanout || mode_echo || mode_connect)) usage();
    if (window >= RING / 2) fail("window too large");
    if (procs < 1 || procs > MAX_PROCS || procs > nconns) fail("--procs must be 1..%d and at most --conns", MAX_PROCS);
    if (procs > 1 && !mode_fanout) fail("--procs splits fan-out subscribers only");
    if (sources < 0 || sources > 254) fail("--sources must be 0..254");
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    all_stats = mmap(NULL, sizeof *all_stats * (size_t)procs, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || all_stats == MAP_FAILED) fail("mmap: %s", strerror(errno));
    t0 = now_ns();
    double cpu0 = cpu_seconds();
    double setup_s = 0, measured_s = 0, open_s = 0;
    int ok = 1;

    /* Process `index` drives subscribers [first, first + nlocal); process 0 also publishes. */
    int index = 0;
    pid_t children[MAX_PROCS];
    for (int k = 1; k < procs; k++) {
        pid_t pid = fork();
        if (pid < 0) fail("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the run */
            index = k;
            break;
        }
        children[k] = pid;
    }
    for (int k = 0; k < index; k++) first += nconns / procs + (k < nconns % procs);
    nlocal = nconns / procs + (index < nconns % procs);
    st = &all_stats[index];
    ep = epoll_create1(0);
    conns = calloc((size_t)nlocal, sizeof *conns);

    if (index > 0) {
        /* a child: its subscribers, until the publisher's process says the run is over */
        if (open_all(0) == 0) {
            while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) == 0 && !any_closed_early()) poll_loop(5);
            double c0 = cpu_seconds();
            measuring = 1;
            while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) == 1) poll_loop(5);
            measuring = 0;
            st->cpu_measured = cpu_seconds() - c0;
            unsigned last = __atomic_load_n(&sh->published, __ATOMIC_ACQUIRE);
            for (int i = 0; i < nlocal; i++) {
                unsigned got = conns[i].expect ? conns[i].expect - 1 : 0;
                if (got < last) st->lost_gaps += last - got;
            }
        } else if (!st->first_error[0] && !any_closed_early()) { /* else: that one's error */
            note_error("subscribers %d.. not ready within %.0f s", first, timeout_s);
        }
        /* stay until told, so the connections outlive the publisher's measurement */
        while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) < 2) poll_loop(5);
        _exit(0);
    }

    if (mode_connect) {
        mark("start");
        uint64_t s0 = now_ns();
        double c0 = cpu_seconds();
        measuring = 1;
        ok = open_all(0) == 0;
        measuring = 0;
        measured_s = (double)(now_ns() - s0) / 1e9;
        st->cpu_measured = cpu_seconds() - c0;
        mark("open");
        st->deliveries = (uint64_t)n_ready;
    } else if (mode_echo) {
        ok = open_all(0) == 0;
        setup_s = elapsed();
        if (ok) {
            mark("start");
            uint64_t s0 = now_ns();
            double c0 = cpu_seconds();
            measuring = 1;
            for (int i = 0; i < nlocal; i++) send_echo(&conns[i]);
            while ((double)(now_ns() - s0) / 1e9 < duration && !n_closed_early) poll_loop(5);
            measuring = 0;
            /* let the messages in flight come back */
            uint64_t d0 = now_ns();
            int waiting = 1;
            while (waiting && (double)(now_ns() - d0) / 1e9 < drain_s) {
                poll_loop(5);
                waiting = 0;
                for (int i = 0; i < nlocal; i++) waiting |= conns[i].replies < conns[i].sent_seq;
            }
            measured_s = (double)(now_ns() - s0) / 1e9;
            st->cpu_measured = cpu_seconds() - c0;
            for (int i = 0; i < nlocal; i++) st->lost_gaps += conns[i].sent_seq - conns[i].replies;
            mark("end");
        }
    } else {
        ok = open_all(1) == 0;
        /* every process's subscribers ready */
        while (ok && __atomic_load_n(&sh->ready, __ATOMIC_RELAXED) < nconns) {
            poll_loop(5);
            if (any_closed_early() || elapsed() > timeout_s) ok = 0;
        }
        open_s = elapsed();
        if (ok && hold_s > 0) mark("ready");
        /* prime: publish 0 until every subscriber has seen one, so registration races end
           (again after 100 ms without progress: a broadcast to many takes longer) */
        uint64_t last = 0;
        int primed_before = -1;
        while (ok && __atomic_load_n(&sh->primed, __ATOMIC_RELAXED) < nconns) {
            int primed = __atomic_load_n(&sh->primed, __ATOMIC_RELAXED);
            if (primed != primed_before) last = now_ns();
            primed_before = primed;
            if (now_ns() - last > 100000000ull || !last) {
                publish(0);
                flush_out(pub);
                last = now_ns();
            }
            poll_loop(5);
            if (any_closed_early() || elapsed() > timeout_s) ok = 0;
        }
        setup_s = elapsed();
        if (ok) {
            for (int i = 0; i < 50; i++) poll_loop(2); /* let late priming copies arrive */
            if (hold_s > 0) {
                mark("open");
                uint64_t h0 = now_ns();
                while ((double)(now_ns() - h0) / 1e9 < hold_s && !any_closed_early()) poll_loop(5);
                if (any_closed_early()) {
                    ok = 0;
                    if (!st->first_error[0]) note_error("a connection closed while held");
                }
            }
        }
        if (ok) {
            mark("start");
            uint64_t s0 = now_ns();
            double c0 = cpu_seconds();
            measuring = 1;
            __atomic_store_n(&sh->phase, 1, __ATOMIC_RELEASE);
            uint64_t last_progress = now_ns();
            unsigned last_fully = 0;
            while ((double)(now_ns() - s0) / 1e9 < duration && !any_closed_early() &&
                   !(max_messages && fully >= max_messages)) {
                int queued = 0;
                while (published - fully < (unsigned)window && !(max_messages && published >= max_messages)) {
                    publish(++published);
                    queued = 1;
                }
                if (queued) flush_out(pub);
                poll_loop(5);
                advance_fully();
                if (fully != last_fully) {
                    last_fully = fully;
                    last_progress = now_ns();
                } else if ((double)(now_ns() - last_progress) / 1e9 > drain_s) {
                    note_error("no message fully delivered for %.1f s", drain_s);
                    break;
                }
            }
            __atomic_store_n(&sh->published, published, __ATOMIC_RELEASE);
            /* every published message must arrive: wait for the stragglers */
            uint64_t d0 = now_ns();
            while (fully < published && (double)(now_ns() - d0) / 1e9 < drain_s && !any_closed_early()) {
                poll_loop(5);
                advance_fully();
            }
            measuring = 0;
            measured_s = (double)(now_ns() - s0) / 1e9;
            st->cpu_measured = cpu_seconds() - c0;
            for (int i = 0; i < nlocal; i++) {
                unsigned got = conns[i].expect ? conns[i].expect - 1 : 0;
                if (got < published) st->lost_gaps += published - got;
            }
            mark("end");
        }
    }
    /* the children stop measuring, report and exit */
    __atomic_store_n(&sh->phase, 2, __ATOMIC_RELEASE);
    for (int k = 1; k < procs; k++) waitpid(children[k], NULL, 0);
    /* every process's figures, summed into slot 0 */
    stats_t *total = &all_stats[0];
    double cpu_max = total->cpu_measured, cpu_sum = total->cpu_measured;
    for (int k = 1; k < procs; k++) {
        stats_t *o = &all_stats[k];
        total->deliveries += o->deliveries;
        total->dups += o->dups;
        total->reorders += o->reorders;
        total->lost_gaps += o->lost_gaps;
        total->bytes_in += o->bytes_in;
        total->bytes_out += o->bytes_out;
        total->requests += o->requests;
        total->lat_n += o->lat_n;
        total->errors += o->errors;
        if (!total->first_error[0]) memcpy(total->first_error, o->first_error, sizeof o->first_error);
        for (int i = 0; i < HIST; i++) total->hist[i] += o->hist[i];
        for (int i = 0; i < HIST_SLOW; i++) total->hist_slow[i] += o->hist_slow[i];
        cpu_sum += o->cpu_measured;
        if (o->cpu_measured > cpu_max) cpu_max = o->cpu_measured;
    }
    if (n_full) qsort(full_ns, n_full, sizeof *full_ns, cmp_u64);
    int ready = __atomic_load_n(&sh->ready, __ATOMIC_RELAXED);
    if (mode_connect) ready = n_ready;
    double cpu_total = cpu_seconds() - cpu0;
    printf("{\"ok\":%s,\"mode\":\"%s\",\"conns\":%d,\"ready\":%d,\"errors\":%d,\"closed_early\":%d,"
           "\"first_error\":\"%s\",\"published\":%u,\"deliveries\":%llu,\"lost\":%llu,"
           "\"duplicates\":%llu,\"out_of_order\":%llu,\"setup_s\":%.4f,\"measured_s\":%.4f,"
           "\"latency_us\":{\"p50\":%.0f,\"p99\":%.0f,\"p999\":%.0f},\"http_requests\":%llu,"
           "\"bytes_in\":%llu,\"bytes_out\":%llu,\"loadgen_cpu_s\":%.4f,\"loadgen_cpu_measured_s\":%.4f,"
           "\"loadgen_procs\":%d,\"loadgen_cpu_measured_total_s\":%.4f,\"open_s\":%.4f,"
           "\"broadcast_ms\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
           ok ? "true" : "false", mode_fanout ? "fanout" : mode_echo ? "echo" : "connect", nconns,
           ready, total->errors, any_closed_early(), total->first_error, published,
           (unsigned long long)total->deliveries, (unsigned long long)total->lost_gaps,
           (unsigned long long)total->dups, (unsigned long long)total->reorders, setup_s, measured_s,
           percentile(total, 0.50), percentile(total, 0.99), percentile(total, 0.999),
           (unsigned long long)total->requests, (unsigned long long)total->bytes_in,
           (unsigned long long)total->bytes_out, cpu_total, cpu_max, procs, cpu_sum, open_s, n_full,
           full_ms(0.50), full_ms(0.99), full_ms(1.0));
    fflush(stdout);
    if (mode_connect && sync_marks) mark("close");
    for (int i = 0; i < nlocal; i++) close_conn(&conns[i]);
    if (pub) close_conn(pub);
    return 0;
}
