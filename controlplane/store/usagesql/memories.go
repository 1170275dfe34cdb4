package usagesql

import "fmt"

// MemoryUpsert adds one memory use of a batch to memory_use_hour; its
// parameters are org_id, ts, workspace, key_ref, name, version, requests,
// tokens, estimated.
func MemoryUpsert(ph func(int) string) string {
	return fmt.Sprintf(`INSERT INTO memory_use_hour (org_id, ts, workspace, key_ref, name, version, requests, tokens, estimated)
		VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
		ON CONFLICT (org_id, ts, workspace, key_ref, name, version) DO UPDATE SET
		  requests = memory_use_hour.requests + excluded.requests,
		  tokens = memory_use_hour.tokens + excluded.tokens,
		  estimated = memory_use_hour.estimated + excluded.estimated`,
		ph(1), ph(2), ph(3), ph(4), ph(5), ph(6), ph(7), ph(8), ph(9))
}

// AuditUpsert adds one audit count of a batch to audit_count_hour; its
// parameters are org_id, ts, workspace, level, records.
func AuditUpsert(ph func(int) string) string {
	return fmt.Sprintf(`INSERT INTO audit_count_hour (org_id, ts, workspace, level, records)
		VALUES (%s, %s, %s, %s, %s)
		ON CONFLICT (org_id, ts, workspace, level) DO UPDATE SET records = audit_count_hour.records + excluded.records`,
		ph(1), ph(2), ph(3), ph(4), ph(5))
}

// MemoryQuery sums an org's memory uses over [from, to) (parameters
// org_id, from, to), most requests first.
func MemoryQuery(ph func(int) string) string {
	return fmt.Sprintf(`SELECT workspace, key_ref, name, version, CAST(SUM(requests) AS BIGINT), CAST(SUM(tokens) AS BIGINT), CAST(SUM(estimated) AS BIGINT)
		FROM memory_use_hour WHERE org_id = %s AND ts >= %s AND ts < %s
		GROUP BY workspace, key_ref, name, version
		ORDER BY workspace, 5 DESC, name, version DESC, key_ref`, ph(1), ph(2), ph(3))
}

// AuditQuery sums an org's audit counts over [from, to) (parameters
// org_id, from, to).
func AuditQuery(ph func(int) string) string {
	return fmt.Sprintf(`SELECT workspace, level, CAST(SUM(records) AS BIGINT)
		FROM audit_count_hour WHERE org_id = %s AND ts >= %s AND ts < %s
		GROUP BY workspace, level ORDER BY workspace, level`, ph(1), ph(2), ph(3))
}
