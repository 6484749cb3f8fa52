package grafana_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The seeded records of tcpTestRecords, read back through every TCP health
// panel: each number below follows from that list.
func TestTheTCPHealthPanelsShowTheSeededHandshakesRetransmitsResetsAndTimeouts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, now := schemaWithTestData(t, ctx)
	panel := func(title string) []map[string]any {
		return panelRows(t, ctx, conn, now, "Trawl / TCP health", title, allValues, allValues)
	}
	pairOf := func(r map[string]any) string {
		return fmt.Sprint(r["client_namespace"], "/", r["client_workload"], " -> ", r["server_namespace"], "/", r["server_workload"])
	}

	t.Run("handshake RTT over time is each pair's one connection of the minute", func(t *testing.T) {
		at := map[string]map[string]any{}
		for _, r := range panel("Handshake RTT p50 and p99 by pair") {
			at[fmt.Sprint(r["time"].(time.Time).UTC().Format(time.RFC3339), " ", r["pair"])] = r
		}
		if len(at) != 6 {
			t.Errorf("%d points, want 3 minutes of 2 pairs: %v", len(at), at)
		}
		minute := now.Add(-5 * time.Minute).Truncate(time.Minute).UTC().Format(time.RFC3339)
		for pair, ms := range map[string]float64{"shop/frontend -> web/api": 1, "web/api -> db/postgres": 40} {
			r, ok := at[minute+" "+pair]
			if !ok {
				t.Errorf("no point for %s 5 minutes ago", pair)
				continue
			}
			if !near(num(r["p50_ms"]), ms) || !near(num(r["p99_ms"]), ms) {
				t.Errorf("%s: p50 %v ms, p99 %v ms; want both %v", pair, r["p50_ms"], r["p99_ms"], ms)
			}
		}
	})

	t.Run("slowest pairs put the 40 ms pair first with its retransmits and reset and leave out the pair without a handshake", func(t *testing.T) {
		rows := panel("Slowest pairs")
		if len(rows) != 2 {
			t.Fatalf("%d rows %v, want the two pairs with a handshake", len(rows), rows)
		}
		if r := rows[0]; pairOf(r) != "web/api -> db/postgres" || num(r["connections"]) != 3 || !near(num(r["p50_ms"]), 40) || !near(num(r["p99_ms"]), 40) ||
			num(r["retransmits"]) != 15 || num(r["resets"]) != 1 || num(r["timeouts"]) != 0 {
			t.Errorf("first row %v, want web/api -> db/postgres: 3 connections at 40 ms, 15 retransmits, 1 reset", r)
		}
		if r := rows[1]; pairOf(r) != "shop/frontend -> web/api" || num(r["connections"]) != 3 || !near(num(r["p99_ms"]), 1) ||
			num(r["retransmits"]) != 2 || num(r["resets"]) != 1 {
			t.Errorf("second row %v, want shop/frontend -> web/api: 3 connections at 1 ms, 2 retransmits, 1 reset", r)
		}
	})

	t.Run("retransmits per pair add up to each pair's retransmitted segments, the server's counted to its pair", func(t *testing.T) {
		byPair := map[string]float64{}
		for _, r := range panel("Retransmits per pair") {
			byPair[fmt.Sprint(r["pair"])] += num(r["retransmits_per_second"]) * 60
		}
		want := map[string]float64{"web/api -> db/postgres": 15, "shop/frontend -> web/api": 2}
		if len(byPair) != len(want) {
			t.Errorf("pairs %v, want %v", byPair, want)
		}
		for p, w := range want {
			if !near(byPair[p], w) {
				t.Errorf("%s: %v retransmits over the hour, want %v", p, byPair[p], w)
			}
		}
	})

	t.Run("most retransmitting pairs rank the server's retransmits first", func(t *testing.T) {
		rows := panel("Most retransmitting pairs")
		if len(rows) != 2 || pairOf(rows[0]) != "web/api -> db/postgres" || num(rows[0]["retransmits"]) != 15 || num(rows[0]["connections"]) != 3 ||
			pairOf(rows[1]) != "shop/frontend -> web/api" || num(rows[1]["retransmits"]) != 2 {
			t.Errorf("rows %v, want web/api -> db/postgres (15) then shop/frontend -> web/api (2)", rows)
		}
	})

	t.Run("connection timeouts by server count the blackholed address's two attempts", func(t *testing.T) {
		by := map[string]float64{}
		for _, r := range panel("Connection timeouts by server") {
			by[fmt.Sprint(r["server"])] += num(r["timeouts_per_minute"])
		}
		if len(by) != 1 || !near(by["reserved:world:443"], 2) {
			t.Errorf("timeouts by server %v, want reserved:world:443 with 2", by)
		}
	})

	t.Run("recent resets name the side that sent each RST and orient client and server by it, newest first", func(t *testing.T) {
		rows := panel("Recent resets")
		if len(rows) != 3 {
			t.Fatalf("%d rows %v, want the three resets", len(rows), rows)
		}
		if r := rows[0]; r["reset_by"] != "SERVER" || r["client"] != "shop/frontend-7d9f-abcde" || r["server"] != "web/api-5c6b-xyz12" || num(r["server_port"]) != 9999 || r["node"] != "node-a" {
			t.Errorf("newest reset %v, want api-5c6b-xyz12's closed port 9999 refusing frontend (SERVER), though its record has no is_reply", r)
		}
		if r := rows[1]; r["reset_by"] != "SERVER" || r["client"] != "web/api-5c6b-xyz12" || r["server"] != "db/postgres-0" || num(r["server_port"]) != 5432 || r["node"] != "node-b" {
			t.Errorf("second reset %v, want postgres-0:5432 resetting api's connection (SERVER)", r)
		}
		if r := rows[2]; r["reset_by"] != "CLIENT" || r["client"] != "shop/frontend-7d9f-abcde" || r["server"] != "web/api-5c6b-xyz12" || num(r["server_port"]) != 8080 {
			t.Errorf("oldest reset %v, want frontend resetting its connection to api:8080 (CLIENT)", r)
		}
	})

	t.Run("recent connect timeouts show the address tried and the SYNs sent", func(t *testing.T) {
		rows := panel("Recent connect timeouts")
		if len(rows) != 2 {
			t.Fatalf("%d rows %v, want the two attempts", len(rows), rows)
		}
		for _, r := range rows {
			if r["client"] != "shop/frontend-7d9f-abcde" || r["destination"] != "::ffff:198.51.100.1" || num(r["dst_port"]) != 443 || num(r["syns"]) != 3 {
				t.Errorf("row %v, want frontend's attempt to 198.51.100.1:443 after 3 SYNs", r)
			}
		}
	})

	t.Run("a node and a namespace select the pairs on that node touching that namespace", func(t *testing.T) {
		rows := panelRows(t, ctx, conn, now, "Trawl / TCP health", "Slowest pairs", nodeA, shopOnly)
		if len(rows) != 1 || pairOf(rows[0]) != "shop/frontend -> web/api" {
			t.Errorf("node-a and shop: %v, want shop/frontend -> web/api only", rows)
		}
		dbOnly := shopOnly
		dbOnly.Values = []string{"db"}
		rows = panelRows(t, ctx, conn, now, "Trawl / TCP health", "Slowest pairs", allValues, dbOnly)
		if len(rows) != 1 || pairOf(rows[0]) != "web/api -> db/postgres" {
			t.Errorf("namespace db (a server's): %v, want web/api -> db/postgres only", rows)
		}
	})
}
