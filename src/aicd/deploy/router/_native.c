/* aicd.deploy.router._native: the router's native data plane (Linux, epoll, one thread).
 *
 * A Plane owns the router's listening socket and serves the common request on its own thread,
 * without the GIL: strict parse of the request head, the weighted choice of a backend (smooth
 * weighted round-robin, as table.py), X-Request-Id kept or given, the head rebuilt as proxy.py
 * rebuilds it, keep-alive pools to the backends, the answer's head parsed and rebuilt, bodies
 * relayed (Content-Length, chunked re-chunked, close-delimited re-chunked), retries as proxy.py,
 * and per-revision metrics as metrics.py counts them (drained by Python).
 *
 * Everything else is handed to Python at a request boundary: the client's socket and the bytes
 * read so far go to a queue, Python's event loop takes them (fileno() becomes readable) and its
 * ClientConnection serves that connection from then on. A head the native parser does not accept
 * (anything malformed, ambiguous or unusual: chunked or large bodies, HTTP/1.0, Expect, Upgrade,
 * other hop-by-hop headers, /_aicd/, limits) is handed over, never refused here: Python's parser
 * (llhttp) gives the verdict, so both paths answer bad input alike.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NATIVE_HEAD_MAX (16 * 1024) /* a longer head goes to Python (which applies its own limits) */
#define NATIVE_BODY_MAX (64 * 1024) /* a larger request body goes to Python (proxy.REPLAY_LIMIT) */
#define CLIENT_IN_MAX (NATIVE_HEAD_MAX + NATIVE_BODY_MAX + 4096)
#define RESPONSE_HEAD_MAX (64 * 1024)
#define CLIENT_OUT_HIGH (256 * 1024) /* answer bytes waiting for the client: stop reading the backend */
#define READ_CHUNK 65536
#define MAX_TRIES 16
#define MAX_KEPT 200 /* kept request header lines (max_headers is at most 10,000: more go to Python) */
#define NBUCKETS 16
#define MAX_CAPTURE (64 * 1024) /* metrics.MAX_CAPTURE */
#define MAX_CAPTURES 65536   /* answers waiting for Python to count their field (drained every 0.1 s) */
#define CLIENT_CLOSED 499
#define TICK 0.1
#define STALE_WINDOW 0.05

static const double BUCKETS[NBUCKETS - 1] = {0.5,   1.0,   2.0,    5.0,    10.0,   20.0,   50.0,  100.0,
                                             200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* -- growable byte buffer --------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const void *data, size_t n) {
    if (n == 0) return 0;
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int buf_str(Buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

static void buf_consume(Buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void buf_free(Buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* -- metrics ---------------------------------------------------------------------------------- */

typedef struct {
    char *name;
    long long requests, errors, proxy_errors, retries, client_closed;
    long long status[1000];
    long long hist[NBUCKETS];
    double sum;
    double *ring; /* the latest latencies since the last drain (at most `reservoir`) */
    long long ring_count;
    int dirty;
} RevStats;

/* -- backends and the table ------------------------------------------------------------------- */

struct BConn;

typedef struct Backend {
    struct Backend *next;
    int rev;                 /* index into Plane.revs */
    char address[300];       /* host:port as Python names it */
    struct sockaddr_in addr; /* resolved by Python */
    int active, in_flight, in_tables;
    struct BConn **idle;
    int nidle, idle_cap;
} Backend;

typedef struct {
    int rev, weight, current, next, nb;
    Backend **b;
} Slot;

typedef struct {
    int nslots, nlive, total;
    Slot *slots;
    Slot **live;
} Table;

/* -- connections ------------------------------------------------------------------------------ */

enum { K_LISTEN = 1, K_CLIENT, K_BACKEND, K_WAKE };
enum { F_NONE = 0, F_LENGTH, F_CHUNKED, F_CLOSE };
enum { CH_SIZE = 0, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_DONE };

typedef struct Node {
    struct Node *prev, *next;
} Node;

struct Client;

typedef struct BConn {
    int kind, fd;
    Node node;
    Backend *be;
    struct Client *client;
    Buf in, out;
    int connecting, reused, closed, events;
    double connect_started;
    long long idle_since;
} BConn;

typedef struct {
    int active;
    char method[8];
    int idempotent; /* GET or HEAD: retried after a broken connection */
    Buf head;       /* request line and kept headers (without the router's own) */
    Buf body;
    char xff[4096];
    int xfflen, xff_set, has_host;
    char rid[130];
    int ridlen;
    int keep; /* may the client connection serve another request */
    double started, sent_at;
    Backend *be;
    Backend *tried[MAX_TRIES];
    int ntried;
    int rev;
    BConn *bc;
    int response_started, status, framing, upstream, bkeep, chunk_state;
    long long remaining;
    long long last_io;
    int capturing; /* 1: the counted-field path; 2: its 2xx answer is being kept; -1: too large */
    Buf cap;
} Exchange;

typedef struct Client {
    int kind, fd;
    Node node;
    Buf in, out;
    char peer[64];
    int peerlen;
    int events, closing, eof, deferred;
    long long last_active;
    Exchange ex;
} Client;

typedef struct {
    int fd;
    char *data;
    size_t len;
} Handoff;

typedef struct {
    int rev;
    char *body;
    size_t len;
    char rid[130];
    int ridlen;
} Capture;

typedef struct {
    PyObject_HEAD
    int listen_fd, epfd, wake_fd, notify_fd;
    int listen_kind, wake_kind;
    pthread_t thread;
    int started, joined;
    pthread_mutex_t lock; /* guards: revs' counters, pending table, handoffs, flags */
    /* settings */
    char id_prefix[64];
    int id_prefix_len;
    unsigned long long id_next;
    int request_ids, max_head, max_headers, max_url, max_attempts, max_idle;
    double connect_timeout, response_timeout, client_idle_timeout, pool_idle_timeout;
    int reservoir;
    char capture[1024];
    int capture_len;
    /* control (written by Python under lock) */
    int python_only, stopping, stop_applied;
    double stop_deadline;
    Table *pending;
    int has_pending;
    /* loop state (the thread's own) */
    Table *table;
    Backend *backends;
    RevStats *revs;
    int nrevs, revs_cap;
    Node clients, bconns, grave_clients, grave_bconns; /* the dead are freed at the end of a turn */
    int nclients;
    long long tick;
    Handoff *handoffs;
    int nhand, hand_cap;
    Capture *caps; /* answers of the counted-field path, for Python's record_body */
    int ncaps, caps_cap;
    int python_only_now;
    int depth;         /* client_next calls on the stack (pipelined requests that end at once) */
    Client **deferred; /* clients whose next request waits for the end of this loop turn */
    int ndeferred, deferred_cap;
} Plane;

static void node_init(Node *n) { n->prev = n->next = n; }
static void node_add(Node *head, Node *n) {
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}
static void node_del(Node *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}
#define CONTAINER(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* -- revisions -------------------------------------------------------------------------------- */

static int rev_index(Plane *pl, const char *name) {
    for (int i = 0; i < pl->nrevs; i++)
        if (strcmp(pl->revs[i].name, name) == 0) return i;
    if (pl->nrevs == pl->revs_cap) {
        int cap = pl->revs_cap ? pl->revs_cap * 2 : 8;
        RevStats *r = realloc(pl->revs, sizeof(RevStats) * (size_t)cap);
        if (!r) return -1;
        pl->revs = r;
        pl->revs_cap = cap;
    }
    RevStats *r = &pl->revs[pl->nrevs];
    memset(r, 0, sizeof(*r));
    r->name = strdup(name);
    r->ring = calloc((size_t)pl->reservoir, sizeof(double));
    if (!r->name || !r->ring) {
        free(r->name);
        free(r->ring);
        return -1;
    }
    return pl->nrevs++;
}

static void record(Plane *pl, int rev, int status, double latency_ms, int proxy_error) {
    if (rev < 0) return;
    pthread_mutex_lock(&pl->lock);
    RevStats *r = &pl->revs[rev];
    r->dirty = 1;
    if (status == CLIENT_CLOSED) {
        r->client_closed++;
    } else {
        r->requests++;
        if (status >= 0 && status < 1000) r->status[status]++;
        if (status >= 500) {
            r->errors++;
            if (proxy_error) r->proxy_errors++;
        }
        int i = 0;
        while (i < NBUCKETS - 1 && latency_ms > BUCKETS[i]) i++;
        r->hist[i]++;
        r->sum += latency_ms;
        r->ring[r->ring_count % pl->reservoir] = latency_ms;
        r->ring_count++;
    }
    pthread_mutex_unlock(&pl->lock);
}

static void record_retry(Plane *pl, int rev) {
    if (rev < 0) return;
    pthread_mutex_lock(&pl->lock);
    pl->revs[rev].retries++;
    pl->revs[rev].dirty = 1;
    pthread_mutex_unlock(&pl->lock);
}

/* -- epoll helpers ---------------------------------------------------------------------------- */

static void ep_set(Plane *pl, int fd, void *ptr, int *current, int events) {
    if (*current == events) return;
    struct epoll_event ev;
    ev.events = (uint32_t)events;
    ev.data.ptr = ptr;
    if (*current < 0)
        epoll_ctl(pl->epfd, EPOLL_CTL_ADD, fd, &ev);
    else
        epoll_ctl(pl->epfd, EPOLL_CTL_MOD, fd, &ev);
    *current = events;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* -- forward declarations --------------------------------------------------------------------- */

static void client_next(Plane *pl, Client *c);
static void client_close(Plane *pl, Client *c);
static void client_flush(Plane *pl, Client *c);
static void bconn_close(Plane *pl, BConn *bc);
static void use_backend(Plane *pl, Client *c, Backend *be);
static void update_client_events(Plane *pl, Client *c);
static void update_bconn_events(Plane *pl, BConn *bc);

/* -- table ------------------------------------------------------------------------------------ */

static void table_free(Table *t) {
    if (!t) return;
    for (int i = 0; i < t->nslots; i++) free(t->slots[i].b);
    free(t->slots);
    free(t->live);
    free(t);
}

static Backend *slot_take(Slot *s) {
    if (s->nb == 1) return s->b[0];
    int i = s->next;
    s->next = (i + 1) % s->nb;
    return s->b[i];
}

static Backend *table_pick(Table *t) {
    if (!t || t->nlive == 0) return NULL;
    if (t->nlive == 1) return slot_take(t->live[0]);
    Slot *best = t->live[0];
    int best_current = -1;
    for (int i = 0; i < t->nlive; i++) {
        Slot *s = t->live[i];
        s->current += s->weight;
        if (s->current > best_current) {
            best = s;
            best_current = s->current;
        }
    }
    best->current -= t->total;
    return slot_take(best);
}

static int was_tried(Exchange *ex, Backend *b) {
    for (int i = 0; i < ex->ntried; i++)
        if (ex->tried[i] == b) return 1;
    return 0;
}

/* Where to retry after `failed`: another backend of its revision, else of the heaviest live one. */
static Backend *table_alternative(Table *t, Backend *failed, Exchange *ex) {
    if (!t) return NULL;
    for (int i = 0; i < t->nslots; i++) {
        Slot *s = &t->slots[i];
        if (s->rev != failed->rev) continue;
        for (int j = 0; j < s->nb; j++)
            if (s->b[j] != failed && !was_tried(ex, s->b[j])) return s->b[j];
    }
    /* live slots of other revisions by weight, heaviest first; the first listed on a tie */
    int done[64] = {0};
    int n = t->nlive < 64 ? t->nlive : 64;
    for (int round = 0; round < n; round++) {
        int pick = -1;
        for (int i = 0; i < n; i++) {
            if (done[i] || t->live[i]->rev == failed->rev) continue;
            if (pick < 0 || t->live[i]->weight > t->live[pick]->weight) pick = i;
        }
        if (pick < 0) break;
        done[pick] = 1;
        Slot *s = t->live[pick];
        for (int j = 0; j < s->nb; j++)
            if (s->b[j] != failed && !was_tried(ex, s->b[j])) return s->b[j];
    }
    return NULL;
}

static void backend_drop_idle(Plane *pl, Backend *be) {
    while (be->nidle > 0) bconn_close(pl, be->idle[be->nidle - 1]);
}

static void backends_collect(Plane *pl) {
    Backend **p = &pl->backends;
    while (*p) {
        Backend *be = *p;
        if (!be->active && be->in_flight == 0 && be->nidle == 0) {
            int busy = 0;
            for (Node *n = pl->bconns.next; n != &pl->bconns; n = n->next)
                if (CONTAINER(n, BConn, node)->be == be) busy = 1;
            if (!busy) {
                *p = be->next;
                free(be->idle);
                free(be);
                continue;
            }
        }
        p = &be->next;
    }
}

/* The thread takes a table Python gave: backends kept (same revision, host, port) keep their pools. */
static void apply_table(Plane *pl) {
    /* all under the lock: Python's set_table walks the backends list, and this may free some */
    pthread_mutex_lock(&pl->lock);
    Table *t = pl->pending;
    pl->pending = NULL;
    pl->has_pending = 0;
    if (!t) {
        pthread_mutex_unlock(&pl->lock);
        return;
    }
    for (Backend *be = pl->backends; be; be = be->next) be->in_tables = 0;
    for (int i = 0; i < t->nslots; i++)
        for (int j = 0; j < t->slots[i].nb; j++) t->slots[i].b[j]->in_tables = 1;
    for (Backend *be = pl->backends; be; be = be->next) {
        if (!be->in_tables && be->active) {
            be->active = 0;
            backend_drop_idle(pl, be);
        }
    }
    table_free(pl->table);
    pl->table = t;
    backends_collect(pl);
    pthread_mutex_unlock(&pl->lock);
}

/* -- request head parsing (a strict subset of HTTP/1.1; anything else: Python) ---------------- */

enum { P_MORE = 0, P_OK = 1, P_HANDOFF = 2 };

static const char *METHODS[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL};

static int is_tchar(unsigned char ch) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* One header line at p + *i (the block is known to end with CRLF CRLF): 1 with its name and
   value (blanks after the colon skipped, *i past its CRLF), 0 for the blank line that ends the
   block (*i past it), -1 for anything else. A value is tabs and visible ASCII; with obs_text
   (responses, as llhttp) bytes from 0x80 too. */
static int header_line(const char *p, size_t *i, int obs_text, size_t *name, size_t *name_len,
                       size_t *value, size_t *value_len) {
    size_t j = *i;
    if (p[j] == '\r') {
        if (p[j + 1] != '\n') return -1;
        *i = j + 2;
        return 0;
    }
    *name = j;
    while (is_tchar((unsigned char)p[j])) j++;
    *name_len = j - *name;
    if (*name_len == 0 || p[j] != ':') return -1;
    j++;
    while (p[j] == ' ' || p[j] == '\t') j++;
    *value = j;
    for (;; j++) {
        unsigned char ch = (unsigned char)p[j];
        if (ch == '\t' || (ch >= 0x20 && ch < 0x7f) || (obs_text && ch >= 0x80)) continue;
        break;
    }
    if (p[j] != '\r' || p[j + 1] != '\n') return -1;
    *value_len = j - *value;
    *i = j + 2;
    return 1;
}

/* A Content-Length value: 1 to 15 digits; -1 for anything else. */
static long long content_length(const char *v, size_t n) {
    if (n == 0 || n > 15) return -1;
    long long length = 0;
    for (size_t k = 0; k < n; k++) {
        if (v[k] < '0' || v[k] > '9') return -1;
        length = length * 10 + (v[k] - '0');
    }
    return length;
}

static int is_url_char(unsigned char ch) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
    return ch != 0 && strchr("-._~:/?#[]@!$&'()*+,;=%", ch) != NULL;
}

static int name_is(const char *name, size_t n, const char *lower) {
    if (strlen(lower) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (ch != lower[i]) return 0;
    }
    return 1;
}

static int sane_id(const char *v, size_t n) {
    if (n < 1 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr("._:@/+=-", ch)))
            return 0;
    }
    return 1;
}

/* Connection tokens: only close and keep-alive are handled here; 1: ok (close set), 0: Python. */
static int connection_ok(const char *v, size_t n, int *close) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t start = i;
        while (i < n && v[i] != ',') i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
        if (end == start) continue;
        if (name_is(v + start, end - start, "close"))
            *close = 1;
        else if (!name_is(v + start, end - start, "keep-alive"))
            return 0;
    }
    return 1;
}

/* Parse one request head at the start of c->in into c->ex. */
static int parse_request(Plane *pl, Client *c) {
    const char *p = c->in.p;
    size_t n = c->in.len;
    size_t scan = n < NATIVE_HEAD_MAX ? n : NATIVE_HEAD_MAX;
    const char *end = scan >= 4 ? memmem(p, scan, "\r\n\r\n", 4) : NULL;
    if (!end) return n >= NATIVE_HEAD_MAX ? P_HANDOFF : P_MORE;
    size_t head_len = (size_t)(end - p) + 4;
    if ((int)head_len > pl->max_head) return P_HANDOFF;
    Exchange *ex = &c->ex;
    ex->head.len = 0;
    ex->body.len = 0;
    ex->xfflen = 0;
    ex->xff_set = 0;
    ex->has_host = 0;
    ex->ridlen = 0;
    ex->keep = 1;
    /* request line */
    size_t i = 0;
    while (i < head_len && p[i] >= 'A' && p[i] <= 'Z') i++;
    if (i == 0 || i > 7 || p[i] != ' ') return P_HANDOFF;
    int known = 0;
    for (int m = 0; METHODS[m]; m++)
        if (strlen(METHODS[m]) == i && memcmp(METHODS[m], p, i) == 0) known = 1;
    if (!known) return P_HANDOFF;
    memcpy(ex->method, p, i);
    ex->method[i] = 0;
    ex->idempotent = (i == 3 && memcmp(p, "GET", 3) == 0);
    size_t url = ++i;
    if (p[url] != '/') return P_HANDOFF;
    while (i < head_len && is_url_char((unsigned char)p[i])) i++;
    size_t url_len = i - url;
    if ((int)url_len > pl->max_url || p[i] != ' ') return P_HANDOFF;
    if (url_len >= 7 && memcmp(p + url, "/_aicd/", 7) == 0) return P_HANDOFF;
    ex->capturing = 0;
    if (pl->capture_len > 0) {
        size_t path_len = 0;
        while (path_len < url_len && p[url + path_len] != '?') path_len++;
        if ((int)path_len == pl->capture_len && memcmp(p + url, pl->capture, path_len) == 0) ex->capturing = 1;
    }
    i++;
    if (head_len - i < 10 || memcmp(p + i, "HTTP/1.1\r\n", 10) != 0) return P_HANDOFF;
    if (buf_add(&ex->head, p, i + 10) < 0) return P_HANDOFF;
    i += 10;
    /* headers */
    int count = 0, close = 0, seen_connection = 0;
    long long length = -1;
    while (1) {
        size_t name, name_len, value, value_len;
        int line = header_line(p, &i, 0, &name, &name_len, &value, &value_len);
        if (line < 0) return P_HANDOFF;
        if (line == 0) break;
        if (++count > pl->max_headers || count > MAX_KEPT) return P_HANDOFF;
        const char *nm = p + name, *v = p + value;
        int keep_line = 1;
        switch (name_len) {
        case 4:
            if (name_is(nm, 4, "host")) ex->has_host = 1;
            break;
        case 14:
            if (name_is(nm, 14, "content-length")) {
                if (length >= 0 || (length = content_length(v, value_len)) < 0) return P_HANDOFF;
            }
            break;
        case 10:
            if (name_is(nm, 10, "connection")) {
                if (seen_connection || !connection_ok(v, value_len, &close)) return P_HANDOFF;
                seen_connection = 1;
                keep_line = 0;
            } else if (name_is(nm, 10, "keep-alive")) {
                return P_HANDOFF;
            }
            break;
        case 17:
            if (name_is(nm, 17, "transfer-encoding")) return P_HANDOFF;
            if (name_is(nm, 17, "x-forwarded-proto")) keep_line = 0;
            break;
        case 6:
            if (name_is(nm, 6, "expect")) return P_HANDOFF;
            break;
        case 7:
            if (name_is(nm, 7, "upgrade") || name_is(nm, 7, "trailer")) return P_HANDOFF;
            break;
        case 2:
            if (name_is(nm, 2, "te")) return P_HANDOFF;
            break;
        case 16:
            if (name_is(nm, 16, "proxy-connection")) return P_HANDOFF;
            break;
        case 12:
            if (name_is(nm, 12, "x-request-id")) {
                keep_line = 0;
                if (sane_id(v, value_len)) {
                    memcpy(ex->rid, v, value_len);
                    ex->ridlen = (int)value_len;
                }
            }
            break;
        case 15:
            if (name_is(nm, 15, "x-forwarded-for")) {
                keep_line = 0;
                size_t need = value_len + (ex->xff_set ? 2 : 0);
                if ((size_t)ex->xfflen + need >= sizeof(ex->xff) - 64) return P_HANDOFF;
                if (ex->xff_set) {
                    memcpy(ex->xff + ex->xfflen, ", ", 2);
                    ex->xfflen += 2;
                }
                memcpy(ex->xff + ex->xfflen, v, value_len);
                ex->xfflen += (int)value_len;
                ex->xff_set = 1;
            }
            break;
        }
        if (name_len == 14 && name_is(nm, 14, "x-aicd-variant")) keep_line = 0;
        if (keep_line) {
            if (buf_add(&ex->head, nm, name_len) < 0 || buf_add(&ex->head, ": ", 2) < 0 ||
                buf_add(&ex->head, v, value_len) < 0 || buf_add(&ex->head, "\r\n", 2) < 0)
                return P_HANDOFF;
        }
    }
    if (i != head_len) return P_HANDOFF;
    if (length > NATIVE_BODY_MAX) return P_HANDOFF;
    if (length < 0) length = 0;
    if (n < head_len + (size_t)length) return P_MORE;
    if (buf_add(&ex->body, p + head_len, (size_t)length) < 0) return P_HANDOFF;
    ex->keep = !close;
    buf_consume(&c->in, head_len + (size_t)length);
    return P_OK;
}

/* -- handoff to Python ------------------------------------------------------------------------ */

static void handoff(Plane *pl, Client *c) {
    Handoff h;
    h.fd = c->fd;
    h.len = c->in.len;
    h.data = c->in.p; /* ownership moves to the queue */
    c->in.p = NULL;
    c->in.len = c->in.cap = 0;
    epoll_ctl(pl->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    c->fd = -1;
    pthread_mutex_lock(&pl->lock);
    if (pl->nhand == pl->hand_cap) {
        int cap = pl->hand_cap ? pl->hand_cap * 2 : 16;
        Handoff *q = realloc(pl->handoffs, sizeof(Handoff) * (size_t)cap);
        if (q) {
            pl->handoffs = q;
            pl->hand_cap = cap;
        }
    }
    if (pl->nhand < pl->hand_cap) {
        pl->handoffs[pl->nhand++] = h;
        h.fd = -1;
    }
    pthread_mutex_unlock(&pl->lock);
    if (h.fd >= 0) { /* out of memory: drop the connection */
        close(h.fd);
        free(h.data);
    } else {
        uint64_t one = 1;
        ssize_t w = write(pl->notify_fd, &one, sizeof(one));
        (void)w;
    }
    client_close(pl, c);
}

/* -- answers the router makes itself ---------------------------------------------------------- */

static const char *reason_of(int status) {
    switch (status) {
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static void json_escape(Buf *b, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            buf_add(b, e, 2);
        } else if (ch < 0x20 || ch >= 0x7f) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", ch);
            buf_str(b, e);
        } else {
            buf_add(b, s, 1);
        }
    }
}

static void finish(Plane *pl, Client *c, int status, int proxy_error);

static void fail(Plane *pl, Client *c, int status, const char *message) {
    Exchange *ex = &c->ex;
    int keep = ex->keep && !pl->stop_applied;
    ex->keep = keep;
    Buf body = {0};
    buf_str(&body, "{\"error\": \"");
    json_escape(&body, message);
    buf_str(&body, "\", \"source\": \"aicd-router\"}");
    char line[256];
    snprintf(line, sizeof(line),
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n", status,
             reason_of(status), body.len);
    buf_str(&c->out, line);
    if (ex->ridlen) {
        buf_str(&c->out, "X-Request-Id: ");
        buf_add(&c->out, ex->rid, (size_t)ex->ridlen);
        buf_str(&c->out, "\r\n");
    }
    buf_str(&c->out, keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    buf_add(&c->out, body.p, body.len);
    buf_free(&body);
    finish(pl, c, status, 1);
}

/* -- the client side ------------------------------------------------------------------------- */

static void exchange_clear(Exchange *ex) {
    ex->active = 0;
    ex->be = NULL;
    ex->bc = NULL;
    ex->ntried = 0;
    ex->rev = -1;
    ex->response_started = 0;
    ex->status = 0;
}

static void leave_backend(Plane *pl, Exchange *ex) {
    if (ex->be) {
        __atomic_sub_fetch(&ex->be->in_flight, 1, __ATOMIC_RELAXED);
        ex->be = NULL;
    }
}


static void client_close(Plane *pl, Client *c) {
    if (c->kind == 0) return; /* already dead */
    Exchange *ex = &c->ex;
    if (ex->bc) {
        BConn *bc = ex->bc;
        ex->bc = NULL;
        bc->client = NULL;
        bconn_close(pl, bc);
    }
    leave_backend(pl, ex);
    if (c->fd >= 0) {
        epoll_ctl(pl->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->kind = 0;
    node_del(&c->node);
    node_add(&pl->grave_clients, &c->node);
    pl->nclients--;
}

/* The client went away (EOF, reset) during its exchange: counted as closed by the client (499). */
static void client_gone(Plane *pl, Client *c) {
    Exchange *ex = &c->ex;
    if (ex->active) {
        ex->active = 0;
        if (ex->rev >= 0) record(pl, ex->rev, CLIENT_CLOSED, 0.0, 0);
    }
    client_close(pl, c);
}

static void update_client_events(Plane *pl, Client *c) {
    if (c->kind == 0 || c->fd < 0) return;
    int want = 0;
    if (!c->eof && c->in.len < CLIENT_IN_MAX) want |= EPOLLIN;
    if (c->out.len) want |= EPOLLOUT;
    ep_set(pl, c->fd, c, &c->events, want);
}

static void update_bconn_events(Plane *pl, BConn *bc) {
    if (bc->kind == 0 || bc->fd < 0) return;
    int want = 0;
    if (!bc->client || bc->client->out.len < CLIENT_OUT_HIGH) want |= EPOLLIN;
    if (bc->connecting || bc->out.len) want |= EPOLLOUT;
    ep_set(pl, bc->fd, bc, &bc->events, want);
}

/* Write what waits for the client; 0 ok, -1 the client is gone (closed here). */
static int client_flush_now(Plane *pl, Client *c) {
    while (c->out.len) {
        ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            client_gone(pl, c);
            return -1;
        }
        buf_consume(&c->out, (size_t)w);
    }
    update_client_events(pl, c);
    if (c->ex.bc) update_bconn_events(pl, c->ex.bc);
    return 0;
}

static void client_flush(Plane *pl, Client *c) { (void)client_flush_now(pl, c); }

static void finish(Plane *pl, Client *c, int status, int proxy_error) {
    Exchange *ex = &c->ex;
    if (!ex->active) return;
    ex->active = 0;
    leave_backend(pl, ex);
    int rev = ex->rev;
    ex->rev = -1;
    c->last_active = pl->tick; /* idle from now on */
    if (!ex->keep) c->closing = 1;
    /* counted before the answer's last bytes go out: whoever reads the metrics after getting the
     * answer sees it counted (the write is a few microseconds of the latency) */
    if (rev >= 0) record(pl, rev, status, (now_s() - ex->started) * 1000.0, proxy_error);
    if (client_flush_now(pl, c) < 0) return;
    client_next(pl, c);
}

static void abort_client(Plane *pl, Client *c, int status) {
    c->ex.keep = 0;
    Exchange *ex = &c->ex;
    if (ex->active) {
        ex->active = 0;
        leave_backend(pl, ex);
        if (ex->rev >= 0) record(pl, ex->rev, status, (now_s() - ex->started) * 1000.0, 1);
        ex->rev = -1;
    }
    if (c->fd >= 0 && c->out.len) {
        ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    client_close(pl, c);
}

static int table_live(Plane *pl) { return pl->table && pl->table->nlive > 0; }

static void client_next_now(Plane *pl, Client *c);

/* Start the next request of this client when nothing is in progress and its last answer is out.
 * Requests that end at once (pipelined ones answered 502 by the router) would nest one call per
 * request: past a few levels the next one waits for the end of the loop turn instead. */
static void client_next(Plane *pl, Client *c) {
    if (pl->depth >= 16) {
        if (!c->deferred && c->kind != 0) {
            if (pl->ndeferred == pl->deferred_cap) {
                int cap = pl->deferred_cap ? pl->deferred_cap * 2 : 64;
                Client **q = realloc(pl->deferred, sizeof(Client *) * (size_t)cap);
                if (!q) {
                    client_close(pl, c);
                    return;
                }
                pl->deferred = q;
                pl->deferred_cap = cap;
            }
            c->deferred = 1;
            pl->deferred[pl->ndeferred++] = c;
        }
        return;
    }
    pl->depth++;
    client_next_now(pl, c);
    pl->depth--;
}

/* The deferred clients, until none is left (before the dead are freed at the end of the turn). */
static void run_deferred(Plane *pl) {
    while (pl->ndeferred > 0) {
        Client *c = pl->deferred[--pl->ndeferred];
        c->deferred = 0;
        if (c->kind != 0) client_next(pl, c);
    }
}

static void client_next_now(Plane *pl, Client *c) {
    if (c->kind == 0 || c->ex.active || c->out.len) return;
    if (c->closing || pl->stop_applied) {
        client_close(pl, c);
        return;
    }
    if (pl->python_only_now || !table_live(pl)) {
        handoff(pl, c);
        return;
    }
    if (c->in.len == 0) {
        if (c->eof) client_close(pl, c);
        else update_client_events(pl, c);
        return;
    }
    int r = parse_request(pl, c);
    if (r == P_HANDOFF) {
        handoff(pl, c);
        return;
    }
    if (r == P_MORE) {
        if (c->eof) client_close(pl, c);
        else update_client_events(pl, c);
        return;
    }
    Exchange *ex = &c->ex;
    ex->active = 1;
    ex->started = now_s();
    ex->rev = -1;
    ex->ntried = 0;
    ex->response_started = 0;
    if (!ex->ridlen && pl->request_ids) {
        pl->id_next++;
        ex->ridlen = snprintf(ex->rid, sizeof(ex->rid), "%.*s%llx", pl->id_prefix_len, pl->id_prefix,
                              pl->id_next);
    }
    update_client_events(pl, c);
    use_backend(pl, c, table_pick(pl->table));
}

/* -- the backend side ------------------------------------------------------------------------ */

static void bconn_close(Plane *pl, BConn *bc) {
    if (bc->kind == 0) return;
    Backend *be = bc->be;
    for (int i = 0; i < be->nidle; i++) {
        if (be->idle[i] == bc) {
            memmove(&be->idle[i], &be->idle[i + 1], sizeof(BConn *) * (size_t)(be->nidle - i - 1));
            be->nidle--;
            break;
        }
    }
    if (bc->client && bc->client->ex.bc == bc) bc->client->ex.bc = NULL;
    bc->client = NULL;
    if (bc->fd >= 0) {
        epoll_ctl(pl->epfd, EPOLL_CTL_DEL, bc->fd, NULL);
        close(bc->fd);
        bc->fd = -1;
    }
    bc->kind = 0;
    node_del(&bc->node);
    node_add(&pl->grave_bconns, &bc->node);
}

static void release(Plane *pl, BConn *bc) {
    Backend *be = bc->be;
    bc->client = NULL;
    if (!be->active || be->nidle >= pl->max_idle || pl->stop_applied) {
        bconn_close(pl, bc);
        return;
    }
    if (be->nidle == be->idle_cap) {
        int cap = be->idle_cap ? be->idle_cap * 2 : 8;
        BConn **q = realloc(be->idle, sizeof(BConn *) * (size_t)cap);
        if (!q) {
            bconn_close(pl, bc);
            return;
        }
        be->idle = q;
        be->idle_cap = cap;
    }
    bc->reused = 1;
    bc->idle_since = pl->tick;
    bc->in.len = 0;
    bc->out.len = 0;
    be->idle[be->nidle++] = bc;
    update_bconn_events(pl, bc);
}

static void retry(Plane *pl, Client *c, Backend *target) {
    Exchange *ex = &c->ex;
    record_retry(pl, ex->rev);
    leave_backend(pl, ex);
    use_backend(pl, c, target);
}

static void connect_failed(Plane *pl, Client *c, Backend *be, int timed_out) {
    Exchange *ex = &c->ex;
    if (ex->ntried < pl->max_attempts && ex->ntried < MAX_TRIES) {
        Backend *target = table_alternative(pl->table, be, ex);
        if (target) {
            retry(pl, c, target);
            return;
        }
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "connecting to backend %s %s", be->address, timed_out ? "timed out" : "was refused");
    fail(pl, c, timed_out ? 504 : 502, msg);
}

static int bconn_write(Plane *pl, BConn *bc) {
    while (bc->out.len) {
        ssize_t w = send(bc->fd, bc->out.p, bc->out.len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return -1;
        }
        buf_consume(&bc->out, (size_t)w);
    }
    update_bconn_events(pl, bc);
    return 0;
}

static void bconn_lost(Plane *pl, BConn *bc);
static void queue_capture(Plane *pl, Exchange *ex);

static void attach(Plane *pl, Client *c, BConn *bc) {
    Exchange *ex = &c->ex;
    ex->bc = bc;
    bc->client = c;
    bc->in.len = 0;
    Buf *o = &bc->out;
    o->len = 0;
    buf_add(o, ex->head.p, ex->head.len);
    if (!ex->xff_set) {
        buf_str(o, "X-Forwarded-For: ");
        buf_add(o, c->peer, (size_t)c->peerlen);
    } else {
        buf_str(o, "X-Forwarded-For: ");
        buf_add(o, ex->xff, (size_t)ex->xfflen);
        buf_str(o, ", ");
        buf_add(o, c->peer, (size_t)c->peerlen);
    }
    buf_str(o, "\r\nX-Forwarded-Proto: http\r\n");
    if (!ex->has_host) {
        buf_str(o, "Host: ");
        buf_str(o, bc->be->address);
        buf_str(o, "\r\n");
    }
    if (ex->ridlen) {
        buf_str(o, "X-Request-Id: ");
        buf_add(o, ex->rid, (size_t)ex->ridlen);
        buf_str(o, "\r\n");
    }
    buf_str(o, "\r\n");
    buf_add(o, ex->body.p, ex->body.len);
    ex->last_io = pl->tick;
    ex->sent_at = now_s();
    if (!bc->connecting && bconn_write(pl, bc) < 0) bconn_lost(pl, bc);
}

static void use_backend(Plane *pl, Client *c, Backend *be) {
    Exchange *ex = &c->ex;
    ex->be = be;
    ex->rev = be->rev;
    ex->tried[ex->ntried++] = be;
    __atomic_add_fetch(&be->in_flight, 1, __ATOMIC_RELAXED);
    if (be->nidle > 0) {
        BConn *bc = be->idle[--be->nidle];
        attach(pl, c, bc);
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    BConn *bc = fd >= 0 ? calloc(1, sizeof(BConn)) : NULL;
    if (!bc) {
        if (fd >= 0) close(fd);
        connect_failed(pl, c, be, 0);
        return;
    }
    set_nodelay(fd);
    bc->kind = K_BACKEND;
    bc->fd = fd;
    bc->be = be;
    bc->events = -1;
    node_add(&pl->bconns, &bc->node);
    int r = connect(fd, (struct sockaddr *)&be->addr, sizeof(be->addr));
    if (r < 0 && errno != EINPROGRESS) {
        bconn_close(pl, bc);
        connect_failed(pl, c, be, 0);
        return;
    }
    bc->connecting = 1;
    bc->connect_started = now_s();
    attach(pl, c, bc);
    update_bconn_events(pl, bc);
}

static void retry_or_fail(Plane *pl, Client *c, BConn *bc, const char *message) {
    Exchange *ex = &c->ex;
    Backend *failed = bc->be;
    int stale = bc->reused && now_s() - ex->sent_at <= STALE_WINDOW;
    bconn_close(pl, bc);
    ex->bc = NULL;
    if (ex->ntried < pl->max_attempts && ex->ntried < MAX_TRIES) {
        if (stale && failed->active) {
            retry(pl, c, failed);
            return;
        }
        if (ex->idempotent || stale) {
            Backend *target = table_alternative(pl->table, failed, ex);
            if (target || failed->active) {
                retry(pl, c, target ? target : failed);
                return;
            }
        }
    }
    fail(pl, c, 502, message);
}

static void response_end(Plane *pl, Client *c, BConn *bc, int bkeep) {
    Exchange *ex = &c->ex;
    queue_capture(pl, ex);
    if (ex->framing == F_CHUNKED) buf_str(&c->out, "0\r\n\r\n");
    ex->bc = NULL;
    bc->client = NULL;
    /* pooled only when the whole request went out (an early answer leaves the backend mid-body) */
    if (bkeep && !pl->stop_applied && !bc->out.len)
        release(pl, bc);
    else
        bconn_close(pl, bc);
    finish(pl, c, ex->status, 0);
}

/* The backend closed (or reset) the connection while serving c's exchange. */
static void bconn_lost(Plane *pl, BConn *bc) {
    Client *c = bc->client;
    if (!c) {
        bconn_close(pl, bc);
        return;
    }
    Exchange *ex = &c->ex;
    if (ex->response_started) {
        if (ex->upstream == F_CLOSE) {
            response_end(pl, c, bc, 0);
            return;
        }
        bconn_close(pl, bc);
        abort_client(pl, c, 502);
        return;
    }
    char msg[400];
    snprintf(msg, sizeof(msg), "backend %s closed the connection without answering", bc->be->address);
    retry_or_fail(pl, c, bc, msg);
}

static void backend_failed(Plane *pl, BConn *bc) {
    Client *c = bc->client;
    bconn_close(pl, bc);
    if (!c) return;
    if (c->ex.response_started)
        abort_client(pl, c, 502);
    else
        fail(pl, c, 502, "invalid HTTP response from the backend");
}

static void emit_chunk(Buf *out, const char *data, size_t n) {
    if (n == 0) return;
    char size[24];
    int k = snprintf(size, sizeof(size), "%zx\r\n", n);
    buf_add(out, size, (size_t)k);
    buf_add(out, data, n);
    buf_add(out, "\r\n", 2);
}

/* Body bytes of an answer being kept for the counted field (as proxy.py's response_body). */
static void captured(Exchange *ex, const char *data, size_t n) {
    if (ex->capturing != 2 || n == 0) return;
    if (ex->cap.len + n > MAX_CAPTURE || buf_add(&ex->cap, data, n) < 0) {
        ex->capturing = -1;
        ex->cap.len = 0;
    }
}

/* A kept answer goes to Python (Plane.captures), which counts its field and keeps it for a label. */
static void queue_capture(Plane *pl, Exchange *ex) {
    if (ex->capturing != 2 || ex->rev < 0) return;
    ex->capturing = 0;
    Capture cap;
    cap.rev = ex->rev;
    cap.len = ex->cap.len;
    cap.body = malloc(cap.len ? cap.len : 1);
    if (!cap.body) return;
    memcpy(cap.body, ex->cap.p, cap.len);
    memcpy(cap.rid, ex->rid, (size_t)ex->ridlen);
    cap.ridlen = ex->ridlen;
    pthread_mutex_lock(&pl->lock);
    if (pl->ncaps == pl->caps_cap && pl->caps_cap < MAX_CAPTURES) {
        int size = pl->caps_cap ? pl->caps_cap * 2 : 64;
        Capture *q = realloc(pl->caps, sizeof(Capture) * (size_t)size);
        if (q) {
            pl->caps = q;
            pl->caps_cap = size;
        }
    }
    if (pl->ncaps < pl->caps_cap) {
        pl->caps[pl->ncaps++] = cap;
        cap.body = NULL;
    }
    pthread_mutex_unlock(&pl->lock);
    free(cap.body); /* NULL when queued; dropped when Python lags by MAX_CAPTURES answers */
}

/* Parse the answer's head at the start of bc->in. 1: done (consumed), 0: more needed, -1: invalid. */
static int parse_response_head(Plane *pl, Client *c, BConn *bc) {
    const char *p = bc->in.p;
    size_t n = bc->in.len;
    const char *end = n >= 4 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
    if (!end) return n > RESPONSE_HEAD_MAX ? -1 : 0;
    size_t head_len = (size_t)(end - p) + 4;
    if (head_len > RESPONSE_HEAD_MAX) return -1;
    if (head_len < 14 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') return -1;
    int minor = p[7] - '0';
    if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') return -1;
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (status < 100) return -1;
    size_t i = 12, reason = 12, reason_len = 0;
    if (p[i] == ' ') {
        reason = ++i;
        while (p[i] == '\t' || (unsigned char)p[i] >= 0x20) {
            if ((unsigned char)p[i] == 0x7f) return -1;
            i++;
        }
        reason_len = i - reason;
    }
    if (p[i] != '\r' || p[i + 1] != '\n') return -1;
    i += 2;
    Exchange *ex = &c->ex;
    Buf *o = &c->out;
    size_t mark = o->len; /* the head is built in place; dropped on error or for 1xx */
    char line[32];
    int k = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    buf_add(o, line, (size_t)k);
    buf_add(o, p + reason, reason_len);
    buf_add(o, "\r\n", 2);
    int chunked = 0, close = 0, keepalive = 0, has_length = 0, te = 0;
    long long length = -1;
    /* names a Connection header lists are dropped too: gather them first */
    const char *named[16];
    size_t named_len[16];
    int nnamed = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t j = i;
        while (1) {
            size_t name, name_len, value, value_len;
            int line = header_line(p, &j, 1, &name, &name_len, &value, &value_len);
            if (line < 0) goto invalid;
            if (line == 0) break;
            const char *nm = p + name, *v = p + value;
            if (pass == 0) {
                if (name_is(nm, name_len, "connection")) {
                    size_t a = 0;
                    while (a < value_len) {
                        while (a < value_len && (v[a] == ' ' || v[a] == '\t' || v[a] == ',')) a++;
                        size_t s = a;
                        while (a < value_len && v[a] != ',') a++;
                        size_t e = a;
                        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
                        if (e == s) continue;
                        if (name_is(v + s, e - s, "close"))
                            close = 1;
                        else if (name_is(v + s, e - s, "keep-alive"))
                            keepalive = 1;
                        else if (nnamed < 16) {
                            named[nnamed] = v + s;
                            named_len[nnamed++] = e - s;
                        } else
                            goto invalid;
                    }
                } else if (name_is(nm, name_len, "transfer-encoding")) {
                    te = 1;
                    if (value_len == 7 && name_is(v, 7, "chunked"))
                        chunked = 1;
                    else
                        goto invalid; /* other codings: not handled natively */
                } else if (name_is(nm, name_len, "content-length")) {
                    long long l = content_length(v, value_len);
                    if (l < 0) goto invalid;
                    if (length >= 0) goto invalid; /* llhttp: duplicate Content-Length */
                    length = l;
                    has_length = 1;
                }
                continue;
            }
            /* pass 1: the headers the client gets */
            if (name_is(nm, name_len, "connection") || name_is(nm, name_len, "keep-alive") ||
                name_is(nm, name_len, "proxy-connection") || name_is(nm, name_len, "te") ||
                name_is(nm, name_len, "trailer") || name_is(nm, name_len, "transfer-encoding") ||
                name_is(nm, name_len, "upgrade"))
                continue;
            if (name_is(nm, name_len, "x-request-id") && ex->ridlen) continue;
            if (chunked && name_is(nm, name_len, "content-length")) continue;
            int drop = 0;
            for (int a = 0; a < nnamed; a++) {
                if (named_len[a] == name_len && strncasecmp(named[a], nm, name_len) == 0) drop = 1;
            }
            if (drop) continue;
            buf_add(o, nm, name_len);
            buf_add(o, ": ", 2);
            buf_add(o, v, value_len);
            buf_add(o, "\r\n", 2);
        }
        if (pass == 1 && j != head_len) goto invalid;
    }
    (void)te;
    if (status < 200) { /* 100 Continue, 103 Early Hints: dropped */
        o->len = mark;
        buf_consume(&bc->in, head_len);
        return 2;
    }
    ex->response_started = 1;
    ex->status = status;
    if (ex->capturing == 1 && status >= 200 && status < 300) {
        ex->capturing = 2;
        ex->cap.len = 0;
    } else {
        ex->capturing = 0;
    }
    ex->upstream = chunked ? F_CHUNKED : (has_length ? F_LENGTH : F_CLOSE);
    ex->remaining = length;
    ex->chunk_state = CH_SIZE;
    if (status == 204 || status == 304)
        ex->framing = F_NONE;
    else if (ex->upstream == F_LENGTH)
        ex->framing = F_LENGTH;
    else
        ex->framing = F_CHUNKED;
    ex->bkeep = ex->upstream != F_CLOSE && (minor == 1 ? !close : keepalive);
    int keep = ex->keep && !pl->stop_applied;
    ex->keep = keep;
    if (ex->ridlen) {
        buf_str(o, "X-Request-Id: ");
        buf_add(o, ex->rid, (size_t)ex->ridlen);
        buf_str(o, "\r\n");
    }
    if (ex->framing == F_CHUNKED) buf_str(o, "Transfer-Encoding: chunked\r\n");
    if (!keep) buf_str(o, "Connection: close\r\n");
    buf_str(o, "\r\n");
    buf_consume(&bc->in, head_len);
    ex->last_io = pl->tick;
    return 1;
invalid:
    o->len = mark;
    return -1;
}

/* Decode a chunked body from bc->in, re-chunk it to the client. 1: the body ended, 0: more, -1 bad. */
static int relay_chunked(Client *c, BConn *bc) {
    Exchange *ex = &c->ex;
    const char *p = bc->in.p;
    size_t n = bc->in.len, i = 0;
    while (i < n) {
        unsigned char ch = (unsigned char)p[i];
        switch (ex->chunk_state) {
        case CH_SIZE:
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')) {
                if (ex->remaining < 0) ex->remaining = 0;
                if (ex->remaining > (1LL << 56)) return -1;
                ex->remaining = ex->remaining * 16 + (ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
                i++;
            } else if (ex->remaining < 0) {
                return -1; /* no digit */
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                ex->chunk_state = CH_EXT;
                i++;
            } else if (ch == '\r') {
                ex->chunk_state = CH_SIZE_LF;
                i++;
            } else {
                return -1;
            }
            break;
        case CH_EXT:
            if (ch == '\r') ex->chunk_state = CH_SIZE_LF;
            else if (ch == '\n' || ch < 0x09 || ch == 0x7f) return -1;
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') return -1;
            i++;
            ex->chunk_state = ex->remaining == 0 ? CH_TRAILER : CH_DATA;
            ex->bkeep = ex->bkeep; /* unchanged */
            break;
        case CH_DATA: {
            size_t take = n - i;
            if ((long long)take > ex->remaining) take = (size_t)ex->remaining;
            emit_chunk(&c->out, p + i, take);
            captured(ex, p + i, take);
            i += take;
            ex->remaining -= (long long)take;
            if (ex->remaining == 0) ex->chunk_state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r') return -1;
            i++;
            ex->chunk_state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n') return -1;
            i++;
            ex->chunk_state = CH_SIZE;
            ex->remaining = -1;
            break;
        case CH_TRAILER: {
            /* trailer lines until an empty one; dropped */
            const char *lf = memchr(p + i, '\n', n - i);
            if (!lf) {
                if (n - i > 8192) return -1;
                buf_consume(&bc->in, i);
                return 0;
            }
            size_t line_len = (size_t)(lf - (p + i)) + 1;
            if (line_len < 2 || p[i + line_len - 2] != '\r') return -1;
            i += line_len;
            if (line_len == 2) {
                ex->chunk_state = CH_DONE;
                if (i != n) ex->bkeep = 0; /* bytes past the answer: out of step */
                buf_consume(&bc->in, n);
                return 1;
            }
            break;
        }
        default:
            return -1;
        }
    }
    buf_consume(&bc->in, i);
    return 0;
}

/* Bytes arrived from the backend for c's exchange: the head, then the body. */
static void process_response(Plane *pl, BConn *bc) {
    Client *c = bc->client;
    Exchange *ex = &c->ex;
    ex->last_io = pl->tick;
    while (!ex->response_started) {
        int r = parse_response_head(pl, c, bc);
        if (r < 0) {
            backend_failed(pl, bc);
            return;
        }
        if (r == 0) return;
        if (r == 1) {
            if (ex->remaining < 0 && ex->upstream == F_CHUNKED) ex->remaining = -1;
            if (ex->upstream == F_CHUNKED) ex->remaining = -1;
            break;
        }
    }
    if (ex->framing == F_NONE) {
        if (bc->in.len) ex->bkeep = 0;
        response_end(pl, c, bc, ex->bkeep);
        return;
    }
    if (ex->upstream == F_LENGTH) {
        size_t take = bc->in.len;
        if ((long long)take > ex->remaining) take = (size_t)ex->remaining;
        buf_add(&c->out, bc->in.p, take);
        captured(ex, bc->in.p, take);
        ex->remaining -= (long long)take;
        int extra = bc->in.len > take;
        bc->in.len = 0;
        if (ex->remaining == 0) {
            response_end(pl, c, bc, ex->bkeep && !extra);
            return;
        }
    } else if (ex->upstream == F_CHUNKED) {
        int r = relay_chunked(c, bc);
        if (r < 0) {
            backend_failed(pl, bc);
            return;
        }
        if (r == 1) {
            response_end(pl, c, bc, ex->bkeep);
            return;
        }
    } else { /* until close: each read becomes a chunk */
        emit_chunk(&c->out, bc->in.p, bc->in.len);
        captured(ex, bc->in.p, bc->in.len);
        bc->in.len = 0;
    }
    client_flush(pl, c);
}

static void on_backend(Plane *pl, BConn *bc, uint32_t events) {
    if (bc->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(bc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        Client *c = bc->client;
        if (err) {
            Backend *be = bc->be;
            bconn_close(pl, bc);
            if (c) connect_failed(pl, c, be, 0);
            return;
        }
        bc->connecting = 0;
        if (!c) {
            release(pl, bc);
            return;
        }
        if (bconn_write(pl, bc) < 0) {
            bconn_lost(pl, bc);
            return;
        }
        return;
    }
    if (events & EPOLLOUT && bc->out.len) {
        if (bconn_write(pl, bc) < 0) {
            bconn_lost(pl, bc);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
    if (bc->client && bc->client->out.len >= CLIENT_OUT_HIGH) return;
    if (buf_reserve(&bc->in, READ_CHUNK) < 0) {
        bconn_lost(pl, bc);
        return;
    }
    ssize_t r = recv(bc->fd, bc->in.p + bc->in.len, bc->in.cap - bc->in.len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (r <= 0) {
        bconn_lost(pl, bc);
        return;
    }
    if (!bc->client) { /* bytes nobody asked for: the connection is out of step */
        bconn_close(pl, bc);
        return;
    }
    bc->in.len += (size_t)r;
    process_response(pl, bc);
}

static void on_client(Plane *pl, Client *c, uint32_t events) {
    if (events & EPOLLOUT && c->out.len) {
        if (client_flush_now(pl, c) < 0) return;
        if (!c->out.len && !c->ex.active) {
            client_next(pl, c);
            if (c->kind == 0) return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->kind == 0) return;
    if (c->eof || c->in.len >= CLIENT_IN_MAX) return;
    size_t room = CLIENT_IN_MAX - c->in.len;
    if (room > READ_CHUNK) room = READ_CHUNK;
    if (buf_reserve(&c->in, room) < 0) {
        client_gone(pl, c);
        return;
    }
    ssize_t r = recv(c->fd, c->in.p + c->in.len, room, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (r <= 0) {
        client_gone(pl, c); /* as Python's path: the connection closes (an exchange: 499) */
        return;
    }
    c->in.len += (size_t)r;
    c->last_active = pl->tick;
    if (!c->ex.active) client_next(pl, c);
    else update_client_events(pl, c);
}

static void on_accept(Plane *pl) {
    for (int k = 0; k < 64; k++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(pl->listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        Client *c = calloc(1, sizeof(Client));
        if (!c) {
            close(fd);
            continue;
        }
        c->kind = K_CLIENT;
        c->fd = fd;
        c->events = -1;
        c->last_active = pl->tick;
        exchange_clear(&c->ex);
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof(c->peer));
            set_nodelay(fd);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, sizeof(c->peer));
            set_nodelay(fd);
        } else {
            strcpy(c->peer, "unix");
        }
        c->peerlen = (int)strlen(c->peer);
        node_add(&pl->clients, &c->node);
        pl->nclients++;
        if (pl->python_only_now || !table_live(pl)) {
            handoff(pl, c);
            continue;
        }
        update_client_events(pl, c);
    }
}

static void free_client(Client *c) {
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->ex.head);
    buf_free(&c->ex.body);
    buf_free(&c->ex.cap);
    free(c);
}

static void free_bconn(BConn *bc) {
    buf_free(&bc->in);
    buf_free(&bc->out);
    free(bc);
}

static void bury(Plane *pl) {
    while (pl->grave_clients.next != &pl->grave_clients) {
        Node *n = pl->grave_clients.next;
        node_del(n);
        free_client(CONTAINER(n, Client, node));
    }
    while (pl->grave_bconns.next != &pl->grave_bconns) {
        Node *n = pl->grave_bconns.next;
        node_del(n);
        free_bconn(CONTAINER(n, BConn, node));
    }
}

static void sweep(Plane *pl) {
    double now = now_s();
    for (Node *n = pl->bconns.next, *next; n != &pl->bconns; n = next) {
        next = n->next;
        BConn *bc = CONTAINER(n, BConn, node);
        if (bc->kind == 0) continue;
        if (bc->connecting && now - bc->connect_started >= pl->connect_timeout) {
            Client *c = bc->client;
            Backend *be = bc->be;
            bconn_close(pl, bc);
            if (c) connect_failed(pl, c, be, 1);
            next = pl->bconns.next; /* the list may have changed: start over (closed ones are gone) */
            continue;
        }
        if (!bc->client && !bc->connecting && (double)(pl->tick - bc->idle_since) * TICK > pl->pool_idle_timeout) {
            bconn_close(pl, bc);
            next = pl->bconns.next;
        }
    }
    long long idle_ticks = (long long)(pl->client_idle_timeout / TICK);
    for (Node *n = pl->clients.next, *next; n != &pl->clients; n = next) {
        next = n->next;
        Client *c = CONTAINER(n, Client, node);
        Exchange *ex = &c->ex;
        /* last_io and tick are whole ticks: the time since the last byte is more than
           (tick - last_io - 1) ticks, never less than the timeout when this holds (it fires up to
           two ticks late, never early) */
        if (ex->active && ex->bc && !ex->bc->connecting &&
            (double)(pl->tick - ex->last_io - 1) * TICK >= pl->response_timeout) {
            BConn *bc = ex->bc;
            bconn_close(pl, bc);
            if (ex->response_started) {
                abort_client(pl, c, 504);
            } else {
                char msg[400];
                snprintf(msg, sizeof(msg), "backend %s did not answer within %gs", bc->be->address,
                         pl->response_timeout);
                fail(pl, c, 504, msg);
            }
            next = pl->clients.next;
            continue;
        }
        if (!ex->active && !c->out.len && pl->tick - c->last_active >= idle_ticks) {
            client_close(pl, c);
            next = pl->clients.next;
        }
    }
}

static void *plane_main(void *arg) {
    Plane *pl = arg;
    struct epoll_event events[256];
    int listening = 1;
    while (1) {
        int n = epoll_wait(pl->epfd, events, 256, 100);
        long long tick = (long long)(now_s() / TICK);
        if (__atomic_load_n(&pl->has_pending, __ATOMIC_ACQUIRE)) apply_table(pl);
        pl->python_only_now = __atomic_load_n(&pl->python_only, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&pl->stopping, __ATOMIC_ACQUIRE) && !pl->stop_applied) {
            pl->stop_applied = 1;
            if (listening) {
                epoll_ctl(pl->epfd, EPOLL_CTL_DEL, pl->listen_fd, NULL);
                listening = 0;
            }
            for (Node *x = pl->clients.next, *next; x != &pl->clients; x = next) {
                next = x->next;
                Client *c = CONTAINER(x, Client, node);
                if (!c->ex.active && !c->out.len) client_close(pl, c);
            }
        }
        for (int i = 0; i < n; i++) {
            int *kind = events[i].data.ptr;
            if (*kind == K_LISTEN) {
                if (listening) on_accept(pl);
            } else if (*kind == K_WAKE) {
                uint64_t v;
                ssize_t r = read(pl->wake_fd, &v, sizeof(v));
                (void)r;
            } else if (*kind == K_CLIENT) {
                on_client(pl, (Client *)kind, events[i].events);
            } else if (*kind == K_BACKEND) {
                on_backend(pl, (BConn *)kind, events[i].events);
            }
            /* kind 0: closed earlier in this turn (still in the graveyard): nothing */
        }
        if (tick != pl->tick) {
            pl->tick = tick;
            sweep(pl);
        }
        run_deferred(pl);
        bury(pl);
        if (pl->stop_applied && (pl->nclients == 0 || now_s() >= pl->stop_deadline)) break;
    }
    /* close everything */
    while (pl->clients.next != &pl->clients) {
        Client *c = CONTAINER(pl->clients.next, Client, node);
        client_gone(pl, c);
    }
    while (pl->bconns.next != &pl->bconns) bconn_close(pl, CONTAINER(pl->bconns.next, BConn, node));
    pl->ndeferred = 0;
    bury(pl);
    return NULL;
}

/* -- the Python type ------------------------------------------------------------------------- */

static void wake(Plane *pl) {
    uint64_t one = 1;
    ssize_t w = write(pl->wake_fd, &one, sizeof(one));
    (void)w;
}

static int Plane_init(Plane *pl, PyObject *args, PyObject *kw) {
    static char *names[] = {"listen_fd",       "id_prefix",         "request_ids",       "max_head_bytes",
                            "max_headers",     "max_url_bytes",     "connect_timeout",   "response_timeout",
                            "client_idle_timeout", "pool_idle_timeout", "max_attempts",  "max_idle_per_backend",
                            "reservoir_size",  "capture_path",      NULL};
    int listen_fd, request_ids, max_head, max_headers, max_url, max_attempts, max_idle, reservoir;
    const char *prefix, *capture = NULL;
    Py_ssize_t prefix_len, capture_len = 0;
    double ct, rt, cit, pit;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iy#piiiddddiiiz#", names, &listen_fd, &prefix, &prefix_len,
                                     &request_ids, &max_head, &max_headers, &max_url, &ct, &rt, &cit, &pit,
                                     &max_attempts, &max_idle, &reservoir, &capture, &capture_len))
        return -1;
    if (pl->epfd > 0) {
        PyErr_SetString(PyExc_RuntimeError, "Plane already initialised");
        return -1;
    }
    if (prefix_len >= (Py_ssize_t)sizeof(pl->id_prefix) || capture_len >= (Py_ssize_t)sizeof(pl->capture) ||
        reservoir < 1 || max_attempts < 1) {
        PyErr_SetString(PyExc_ValueError, "Plane: id_prefix, capture_path, reservoir_size or max_attempts out of range");
        return -1;
    }
    pl->listen_fd = listen_fd;
    memcpy(pl->id_prefix, prefix, (size_t)prefix_len);
    pl->id_prefix_len = (int)prefix_len;
    pl->request_ids = request_ids;
    pl->max_head = max_head;
    pl->max_headers = max_headers;
    pl->max_url = max_url;
    pl->connect_timeout = ct;
    pl->response_timeout = rt;
    pl->client_idle_timeout = cit;
    pl->pool_idle_timeout = pit;
    pl->max_attempts = max_attempts;
    pl->max_idle = max_idle;
    pl->reservoir = reservoir;
    if (capture) memcpy(pl->capture, capture, (size_t)capture_len);
    pl->capture_len = (int)capture_len;
    pl->listen_kind = K_LISTEN;
    pl->wake_kind = K_WAKE;
    node_init(&pl->clients);
    node_init(&pl->bconns);
    node_init(&pl->grave_clients);
    node_init(&pl->grave_bconns);
    pthread_mutex_init(&pl->lock, NULL);
    pl->epfd = epoll_create1(EPOLL_CLOEXEC);
    pl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pl->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pl->epfd < 0 || pl->wake_fd < 0 || pl->notify_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev;
    ev.events = EPOLLIN;
    ev.data.ptr = &pl->listen_kind;
    if (epoll_ctl(pl->epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    ev.data.ptr = &pl->wake_kind;
    epoll_ctl(pl->epfd, EPOLL_CTL_ADD, pl->wake_fd, &ev);
    pl->tick = (long long)(now_s() / TICK);
    return 0;
}

static PyObject *Plane_start(Plane *pl, PyObject *unused) {
    if (pl->epfd <= 0 || pl->started) {
        PyErr_SetString(PyExc_RuntimeError, "Plane: not initialised, or started already");
        return NULL;
    }
    if (pthread_create(&pl->thread, NULL, plane_main, pl) != 0) {
        PyErr_SetString(PyExc_OSError, "Plane: cannot start its thread");
        return NULL;
    }
    pl->started = 1;
    Py_RETURN_NONE;
}

static void plane_join(Plane *pl, double grace) {
    if (!pl->started || pl->joined) return;
    pthread_mutex_lock(&pl->lock);
    pl->stop_deadline = now_s() + grace;
    __atomic_store_n(&pl->stopping, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&pl->lock);
    wake(pl);
    pthread_join(pl->thread, NULL);
    pl->joined = 1;
}

static PyObject *Plane_stop(Plane *pl, PyObject *args) {
    double grace = 10.0;
    if (!PyArg_ParseTuple(args, "|d", &grace)) return NULL;
    Py_BEGIN_ALLOW_THREADS plane_join(pl, grace);
    Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

static PyObject *Plane_fileno(Plane *pl, PyObject *unused) { return PyLong_FromLong(pl->notify_fd); }

static PyObject *Plane_take(Plane *pl, PyObject *unused) {
    uint64_t v;
    ssize_t r = read(pl->notify_fd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&pl->lock);
    Handoff *q = pl->handoffs;
    int n = pl->nhand;
    pl->handoffs = NULL;
    pl->nhand = pl->hand_cap = 0;
    pthread_mutex_unlock(&pl->lock);
    PyObject *out = PyList_New(0);
    for (int i = 0; i < n; i++) {
        PyObject *item = out ? Py_BuildValue("(iy#)", q[i].fd, q[i].data ? q[i].data : "", (Py_ssize_t)q[i].len) : NULL;
        free(q[i].data);
        if (!item || PyList_Append(out, item) < 0) {
            close(q[i].fd);
            Py_XDECREF(item);
            continue;
        }
        Py_DECREF(item);
    }
    free(q);
    return out;
}

/* set_table([(revision, weight, [(address, ipv4, port), ...]), ...]) */
static PyObject *Plane_set_table(Plane *pl, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "set_table takes a list");
        return NULL;
    }
    Py_ssize_t nslots = PyList_GET_SIZE(arg);
    Table *t = calloc(1, sizeof(Table));
    if (!t) return PyErr_NoMemory();
    t->slots = calloc((size_t)nslots + 1, sizeof(Slot));
    t->live = calloc((size_t)nslots + 1, sizeof(Slot *));
    if (!t->slots || !t->live) {
        table_free(t);
        return PyErr_NoMemory();
    }
    pthread_mutex_lock(&pl->lock);
    for (Py_ssize_t i = 0; i < nslots; i++) {
        const char *rev;
        int weight;
        PyObject *list;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(arg, i), "siO!", &rev, &weight, &PyList_Type, &list)) goto error;
        Slot *s = &t->slots[t->nslots++];
        s->rev = rev_index(pl, rev);
        s->weight = weight;
        if (s->rev < 0) {
            PyErr_NoMemory();
            goto error;
        }
        Py_ssize_t nb = PyList_GET_SIZE(list);
        s->b = calloc((size_t)nb + 1, sizeof(Backend *));
        if (!s->b) {
            PyErr_NoMemory();
            goto error;
        }
        for (Py_ssize_t j = 0; j < nb; j++) {
            const char *address, *ip;
            int port;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(list, j), "ssi", &address, &ip, &port)) goto error;
            struct sockaddr_in sa;
            memset(&sa, 0, sizeof(sa));
            sa.sin_family = AF_INET;
            sa.sin_port = htons((uint16_t)port);
            if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1 || strlen(address) >= sizeof(((Backend *)0)->address)) {
                PyErr_Format(PyExc_ValueError, "set_table: %s is not an IPv4 address", ip);
                goto error;
            }
            Backend *be = NULL;
            for (Backend *x = pl->backends; x; x = x->next)
                if (x->rev == s->rev && strcmp(x->address, address) == 0 &&
                    x->addr.sin_addr.s_addr == sa.sin_addr.s_addr && x->addr.sin_port == sa.sin_port)
                    be = x;
            if (!be) {
                be = calloc(1, sizeof(Backend));
                if (!be) {
                    PyErr_NoMemory();
                    goto error;
                }
                be->rev = s->rev;
                strcpy(be->address, address);
                be->addr = sa;
                be->next = pl->backends;
                pl->backends = be;
            }
            be->active = 1; /* (the thread marks those left out inactive when it takes the table) */
            s->b[s->nb++] = be;
        }
        if (s->weight > 0 && s->nb > 0) {
            t->live[t->nlive++] = s;
            t->total += s->weight;
        }
    }
    table_free(pl->pending);
    pl->pending = t;
    __atomic_store_n(&pl->has_pending, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&pl->lock);
    wake(pl);
    Py_RETURN_NONE;
error:
    pthread_mutex_unlock(&pl->lock);
    table_free(t);
    return NULL;
}

static PyObject *Plane_set_python_only(Plane *pl, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    __atomic_store_n(&pl->python_only, on, __ATOMIC_RELEASE);
    wake(pl);
    Py_RETURN_NONE;
}

/* drain() -> [(revision, requests, errors, proxy_errors, retries, client_closed, {status: n},
 *              [histogram], latency_sum_ms, [latencies_ms])] of the revisions counted since the last call */
static PyObject *Plane_drain(Plane *pl, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    pthread_mutex_lock(&pl->lock);
    for (int i = 0; i < pl->nrevs; i++) {
        RevStats *r = &pl->revs[i];
        if (!r->dirty) continue;
        PyObject *status = PyDict_New(), *hist = PyList_New(NBUCKETS);
        long long kept = r->ring_count < pl->reservoir ? r->ring_count : pl->reservoir;
        PyObject *lat = PyList_New((Py_ssize_t)kept);
        if (!status || !hist || !lat) goto fail;
        for (int s = 0; s < 1000; s++) {
            if (!r->status[s]) continue;
            PyObject *k = PyLong_FromLong(s), *v = PyLong_FromLongLong(r->status[s]);
            int bad = !k || !v || PyDict_SetItem(status, k, v) < 0;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (bad) goto fail;
        }
        for (int b = 0; b < NBUCKETS; b++) PyList_SET_ITEM(hist, b, PyLong_FromLongLong(r->hist[b]));
        long long first = r->ring_count - kept;
        for (long long k = 0; k < kept; k++)
            PyList_SET_ITEM(lat, (Py_ssize_t)k, PyFloat_FromDouble(r->ring[(first + k) % pl->reservoir]));
        PyObject *item = Py_BuildValue("(sLLLLLNNdN)", r->name, r->requests, r->errors, r->proxy_errors,
                                       r->retries, r->client_closed, status, hist, r->sum, lat);
        status = hist = lat = NULL;
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
        char *name = r->name;
        double *ring = r->ring;
        memset(r, 0, sizeof(*r));
        r->name = name;
        r->ring = ring;
        continue;
    fail:
        Py_XDECREF(status);
        Py_XDECREF(hist);
        Py_XDECREF(lat);
        pthread_mutex_unlock(&pl->lock);
        Py_DECREF(out);
        return NULL;
    }
    pthread_mutex_unlock(&pl->lock);
    return out;
}

/* captures() -> [(revision, body, request_id)]: answers of the counted-field path since the last call */
static PyObject *Plane_captures(Plane *pl, PyObject *unused) {
    pthread_mutex_lock(&pl->lock);
    Capture *q = pl->caps;
    int n = pl->ncaps;
    pl->caps = NULL;
    pl->ncaps = pl->caps_cap = 0;
    PyObject *out = PyList_New(0);
    for (int i = 0; i < n; i++) {
        PyObject *item = out ? Py_BuildValue("(sy#y#)", pl->revs[q[i].rev].name, q[i].body, (Py_ssize_t)q[i].len,
                                             q[i].rid, (Py_ssize_t)q[i].ridlen)
                             : NULL;
        if (item && PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
        free(q[i].body);
    }
    pthread_mutex_unlock(&pl->lock);
    free(q);
    return out;
}

static PyObject *Plane_in_flight(Plane *pl, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    pthread_mutex_lock(&pl->lock);
    for (Backend *be = pl->backends; be; be = be->next) {
        int n = __atomic_load_n(&be->in_flight, __ATOMIC_RELAXED);
        if (n <= 0) continue;
        PyObject *key = PyUnicode_FromString(pl->revs[be->rev].name);
        PyObject *old = key ? PyDict_GetItemWithError(out, key) : NULL;
        long total = n + (old ? PyLong_AsLong(old) : 0);
        PyObject *value = PyLong_FromLong(total);
        if (!key || !value || PyDict_SetItem(out, key, value) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            pthread_mutex_unlock(&pl->lock);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    pthread_mutex_unlock(&pl->lock);
    return out;
}

static void Plane_dealloc(Plane *pl) {
    if (pl->started && !pl->joined) {
        Py_BEGIN_ALLOW_THREADS plane_join(pl, 0.0);
        Py_END_ALLOW_THREADS
    }
    if (pl->epfd > 0) {
        for (int i = 0; i < pl->nhand; i++) {
            close(pl->handoffs[i].fd);
            free(pl->handoffs[i].data);
        }
        free(pl->handoffs);
        free(pl->deferred);
        for (int i = 0; i < pl->ncaps; i++) free(pl->caps[i].body);
        free(pl->caps);
        table_free(pl->table);
        table_free(pl->pending);
        while (pl->backends) {
            Backend *be = pl->backends;
            pl->backends = be->next;
            free(be->idle);
            free(be);
        }
        for (int i = 0; i < pl->nrevs; i++) {
            free(pl->revs[i].name);
            free(pl->revs[i].ring);
        }
        free(pl->revs);
        close(pl->epfd);
        close(pl->wake_fd);
        close(pl->notify_fd);
        pthread_mutex_destroy(&pl->lock);
    }
    Py_TYPE(pl)->tp_free((PyObject *)pl);
}

/* parse_head(data, max_head_bytes, max_headers, max_url_bytes) -> (0 more | 1 ok | 2 Python, details):
 * the native parser's verdict on one request head, for tests and fuzzing. */
static PyObject *parse_head(PyObject *mod, PyObject *args) {
    const char *data;
    Py_ssize_t n;
    Plane pl;
    memset(&pl, 0, sizeof(pl));
    pl.max_head = 65536;
    pl.max_headers = 100;
    pl.max_url = 8192;
    if (!PyArg_ParseTuple(args, "y#|iii", &data, &n, &pl.max_head, &pl.max_headers, &pl.max_url)) return NULL;
    Client *c = calloc(1, sizeof(Client));
    if (!c) return PyErr_NoMemory();
    if (buf_add(&c->in, data, (size_t)n) < 0) {
        free_client(c);
        return PyErr_NoMemory();
    }
    int r = parse_request(&pl, c);
    PyObject *out;
    if (r == P_OK) {
        Exchange *ex = &c->ex;
        out = Py_BuildValue("(i(sy#y#Oy#Oy#n))", r, ex->method, ex->head.p, (Py_ssize_t)ex->head.len, ex->body.p ? ex->body.p : "",
                            (Py_ssize_t)ex->body.len, ex->keep ? Py_True : Py_False, ex->rid, (Py_ssize_t)ex->ridlen,
                            ex->xff_set ? Py_True : Py_False, ex->xff, (Py_ssize_t)ex->xfflen, (Py_ssize_t)(n - (Py_ssize_t)c->in.len));
    } else {
        out = Py_BuildValue("(iO)", r, Py_None);
    }
    free_client(c);
    return out;
}

static PyMethodDef Plane_methods[] = {
    {"start", (PyCFunction)Plane_start, METH_NOARGS, "Serve on the plane's own thread from now on."},
    {"stop", (PyCFunction)Plane_stop, METH_VARARGS, "Stop accepting; finish requests in progress (up to grace s); join."},
    {"fileno", (PyCFunction)Plane_fileno, METH_NOARGS, "Readable when connections wait for Python (take())."},
    {"take", (PyCFunction)Plane_take, METH_NOARGS, "The connections handed to Python: [(fd, bytes read so far)]."},
    {"set_table", (PyCFunction)Plane_set_table, METH_O, "Route by this table from the next request on."},
    {"set_python_only", (PyCFunction)Plane_set_python_only, METH_O, "Hand every connection to Python (True) or not."},
    {"drain", (PyCFunction)Plane_drain, METH_NOARGS, "Per-revision counts since the last drain."},
    {"in_flight", (PyCFunction)Plane_in_flight, METH_NOARGS, "Requests being served natively, by revision."},
    {"captures", (PyCFunction)Plane_captures, METH_NOARGS, "Answers of the counted-field path: [(revision, body, id)]."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "aicd.deploy.router._native.Plane",
    .tp_basicsize = sizeof(Plane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The router's native data plane (see the module's C source for what it handles).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Plane_init,
    .tp_dealloc = (destructor)Plane_dealloc,
    .tp_methods = Plane_methods,
};

static PyMethodDef module_methods[] = {
    {"parse_head", parse_head, METH_VARARGS, "The native parser's verdict on a request head (tests, fuzzing)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "aicd.deploy.router._native", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&PlaneType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&PlaneType);
    if (PyModule_AddObject(m, "Plane", (PyObject *)&PlaneType) < 0) {
        Py_DECREF(&PlaneType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "NATIVE_HEAD_MAX", NATIVE_HEAD_MAX);
    PyModule_AddIntConstant(m, "NATIVE_BODY_MAX", NATIVE_BODY_MAX);
    return m;
}
