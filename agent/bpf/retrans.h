/* The retransmit rings of tcp_retrans.c (see its comment): slot layout,
 * map, and the helpers that fill a slot from a socket. A header so the
 * benchmark's variant programs (retrans_variants.c) build the same slots. */
#ifndef TRAWL_RETRANS_H
#define TRAWL_RETRANS_H

#define AF_INET_ 2
#define AF_INET6_ 10

/* What a slot records. */
enum retrans_kind {
	RETRANS_EVENT = 1,    /* a retransmission: total_retrans after it, its segments */
	RETRANS_STATE = 2,    /* a state change of a socket that has retransmitted (segs 0) */
	RETRANS_ACCEPTED = 3, /* an accepted connection: its total starts at its listener's SYN-ACKs sent again */
	RETRANS_SYNACK = 4,   /* a listener's SYN-ACK sent again: one segment, no socket yet */
};

/* One event, a cache line. */
struct retrans_slot {
	struct flow_tuple tuple;
	__u64 sock;   /* the socket's identity (sock_id); 0 for a SYN-ACK */
	__u32 total;  /* the socket's total_retrans after the event */
	__u16 segs;   /* segments this event added to it */
	__u8 kind;    /* enum retrans_kind */
	__u8 pad;
	__u8 pad2[8];
};

#define RETRANS_SLOTS 64

/* Which row a program writes: CPU * RETRANS_ROWS_PER_CPU + this. */
enum retrans_row {
	ROW_RETRANSMIT = 0,
	ROW_STATE = 1,
	ROW_SYNACK = 2,
	RETRANS_ROWS_PER_CPU = 3,
};

struct retrans_ring {
	__u64 head; /* events written to this row so far */
	__u8 pad[56];
	struct retrans_slot slots[RETRANS_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RETRANS_ROWS_PER_CPU); /* the loader sets CPUs * RETRANS_ROWS_PER_CPU */
	__type(key, __u32);
	__type(value, struct retrans_ring);
} retrans_rings SEC(".maps");


/* tuple_of fills the socket's tuple as flow.c keys its packets; 0 for a
 * family that is neither. c is the socket's (or request socket's) common
 * part, a trusted BTF pointer; sport its local port (a closing socket's
 * skc_num is already 0). */
static __always_inline int tuple_of(struct flow_tuple *t, const struct sock_common *c, __u16 sport)
{
	__u16 family = c->skc_family;
	int v4 = family == AF_INET_;
	if (family == AF_INET6_) {
		/* A dual-stack socket talking IPv4 keeps ::ffff:a.b.c.d; its
		 * packets are IPv4, and so is its entry. */
		const __u32 *d = c->skc_v6_daddr.in6_u.u6_addr32;
		v4 = d[0] == 0 && d[1] == 0 && d[2] == bpf_htonl(0xffff);
		if (!v4) {
			t->family = 6;
			__builtin_memcpy(t->saddr, &c->skc_v6_rcv_saddr, 16);
			__builtin_memcpy(t->daddr, &c->skc_v6_daddr, 16);
		}
	} else if (!v4) {
		return 0;
	}
	if (v4) {
		t->family = 4;
		__builtin_memcpy(t->saddr, &c->skc_rcv_saddr, 4);
		__builtin_memcpy(t->daddr, &c->skc_daddr, 4);
	}
	t->proto = IPPROTO_TCP_;
	t->sport = sport;
	t->dport = bpf_ntohs(c->skc_dport);
	return 1;
}

/* slot_next is the slot this CPU's row of a program writes next, NULL if
 * the map has no such row; *head is where its head lives. */
static __always_inline struct retrans_slot *slot_next(enum retrans_row row, __u64 **head)
{
	__u32 idx = bpf_get_smp_processor_id() * RETRANS_ROWS_PER_CPU + row;
	struct retrans_ring *r = bpf_map_lookup_elem(&retrans_rings, &idx);
	if (!r)
		return 0;
	*head = &r->head;
	return &r->slots[r->head & (RETRANS_SLOTS - 1)];
}

/* publish makes the filled slot visible: the head moves after the slot's
 * stores, never before. */
static __always_inline void publish(__u64 *head)
{
	asm volatile("" ::: "memory");
	*head += 1;
}

/* record_event writes one event into this CPU's row. The slot's tuple is
 * cleared first: its padding and, for IPv4, the addresses' last 12 bytes
 * are part of the agent's key. c is the socket's (or request socket's)
 * common part, sport its local port. */
static __always_inline void record_event(enum retrans_row row, const struct sock_common *c, __u16 sport,
					 __u64 sock, __u32 total, __u32 segs, enum retrans_kind kind)
{
	__u64 *head;
	struct retrans_slot *s = slot_next(row, &head);
	if (!s)
		return;
	__builtin_memset(&s->tuple, 0, sizeof(s->tuple));
	if (!tuple_of(&s->tuple, c, sport))
		return;
	s->sock = sock;
	s->total = total;
	s->segs = segs;
	s->kind = kind;
	publish(head);
}

/* sock_id tells the agent one socket from another on the same tuple: its
 * cookie when something made one (never reused while the machine runs),
 * else its address (a plain read: bpf_get_socket_cookie makes the cookie at
 * a socket's first call, and most sockets that retransmit do so once or
 * twice: the benchmark's variant with it cost 75 ns more per event, medians
 * of 5 runs). An address can be reused by
 * a later socket on the same tuple: the agent then takes both for one and
 * counts the later one only above the earlier one's total (never more than
 * was sent). A socket whose cookie is made during its life changes
 * identity once: the agent counts the new one from the event at hand, which
 * is exact. Used as an identity only, never exported. */
static __always_inline __u64 sock_id(struct sock *sk)
{
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	return cookie ? cookie : (__u64)sk;
}

/* record_slot writes a connected socket's event under the identity sock. */
static __always_inline void record_slot(enum retrans_row row, struct sock *sk, struct tcp_sock *tp, enum retrans_kind kind, __u32 segs, __u64 sock)
{
	record_event(row, &sk->__sk_common, bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport), sock, tp->total_retrans, segs, kind);
}

static __always_inline void record(enum retrans_row row, struct sock *sk, struct tcp_sock *tp, enum retrans_kind kind, __u32 segs)
{
	record_slot(row, sk, tp, kind, segs, sock_id(sk));
}

#endif
