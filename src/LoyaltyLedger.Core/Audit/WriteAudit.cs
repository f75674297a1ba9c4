using System.Data.Common;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Audit;

/// <summary>
/// Which key made each write: one row per accepted write request (method, path, status, key,
/// idempotency key), inserted in the same transaction as the write itself, so a write and its
/// record stand or fall together. Ledger events also carry the key in <c>events.posted_by</c>.
/// </summary>
public static class WriteAudit
{
    private const string Insert =
        """
        INSERT INTO write_audit (org_id, key_id, method, path, status_code, idempotency_key, created_at)
        VALUES (@orgId, @keyId, @method, @path, @status, @idempotencyKey, @nowMs)
        """;

    public static Task RecordAsync(DbConnection connection, DbTransaction transaction, long orgId, string keyId, string method, string path,
        int status, string? idempotencyKey, long nowMs, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(Insert, Args(orgId, keyId, method, path, status, idempotencyKey, nowMs), transaction, cancellationToken: ct));

    /// <summary>
    /// Adds the record to a batch of the write's other statements; inside
    /// <see cref="LedgerDatabase.WriteAsync{T}"/> it is left for the end of the transaction
    /// (<see cref="RowsAtEnd"/>), where the records of every write of a group-commit transaction go
    /// in the round trip that writes their outbox rows. Nothing reads them before the commit.
    /// </summary>
    public static void Add(StatementBatch batch, long orgId, string keyId, string method, string path, int status, string? idempotencyKey, long nowMs) =>
        Records.Add(batch, orgId, keyId, method, Shortened(path), status, idempotencyKey, nowMs);

    /// <summary>The records left for the end of a transaction: on PostgreSQL one statement for each organization's records in a group-commit batch.</summary>
    private static readonly RowsAtEnd Records = new(Insert,
        """
        INSERT INTO write_audit (org_id, key_id, method, path, status_code, idempotency_key, created_at)
        SELECT @orgId, a.key_id, a.method, a.path, a.status_code, a.idempotency_key, a.created_at
        FROM unnest(@keyId::text[], @method::text[], @path::text[], @status::integer[], @idempotencyKey::text[], @nowMs::bigint[])
            AS a(key_id, method, path, status_code, idempotency_key, created_at)
        """,
        "orgId",
        [("keyId", typeof(string)), ("method", typeof(string)), ("path", typeof(string)), ("status", typeof(int)),
            ("idempotencyKey", typeof(string)), ("nowMs", typeof(long))]);

    private static string Shortened(string path) => path.Length > 500 ? path[..500] : path;

    private static object Args(long orgId, string keyId, string method, string path, int status, string? idempotencyKey, long nowMs) =>
        new { orgId, keyId, method, path = Shortened(path), status, idempotencyKey, nowMs };
}
