using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Idempotency;

/// <summary>
/// A key of the <see cref="IdempotencyStore"/>, unique per organization: a client's
/// <c>Idempotency-Key</c> (<see cref="Request"/>, in <c>idempotency_keys</c>) or a till's receipt
/// (<see cref="Receipt"/>, in <c>vault_receipts</c>). Both follow the same rules; each kind of key
/// has its own table and its own statements, written out in <see cref="KeySpace"/>.
/// </summary>
public sealed class IdempotencyKey
{
    private readonly (string Name, object? Value)[] _columns;

    private IdempotencyKey(KeySpace space, long orgId, params (string Name, object? Value)[] columns)
    {
        Space = space;
        OrgId = orgId;
        _columns = columns;
    }

    /// <summary>A client's Idempotency-Key (or a support console form's key, prefixed).</summary>
    public static IdempotencyKey Request(long orgId, string key) =>
        new(KeySpace.Requests, orgId, ("key", key));

    /// <summary>
    /// A till's receipt: unique per shop and till (blank when absent). The account the basket was
    /// posted to is recorded with the claim.
    /// </summary>
    public static IdempotencyKey Receipt(long orgId, string shopId, string posId, string receiptNr, string accountNumber) =>
        new(KeySpace.Receipts, orgId, ("shopId", shopId), ("posId", posId), ("receiptNr", receiptNr), ("accountNumber", accountNumber));

    public long OrgId { get; }

    internal KeySpace Space { get; }

    /// <summary>The statement parameters naming this key, with <paramref name="more"/>.</summary>
    internal Dictionary<string, object?> Args(params (string Name, object? Value)[] more)
    {
        var args = new Dictionary<string, object?>(_columns.Length + more.Length + 1) { ["org"] = OrgId };
        foreach (var (name, value) in _columns) args[name] = value;
        foreach (var (name, value) in more) args[name] = value;
        return args;
    }
}

/// <summary>The table of one kind of key and the statements of the store's rules on it.</summary>
internal sealed class KeySpace
{
    public static readonly KeySpace Requests = new(
        claim: """
            INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at)
            VALUES (@org, @key, @requestHash, 0, NULL, @now)
            ON CONFLICT (org_id, idempotency_key) DO NOTHING
            """,
        answer: "UPDATE idempotency_keys SET status_code = @status, response_body = @body WHERE org_id = @org AND idempotency_key = @key",
        answerWithClaim: """
            INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at)
            VALUES (@org, @key, @requestHash, @status, @body, @now)
            ON CONFLICT (org_id, idempotency_key) DO UPDATE SET status_code = excluded.status_code, response_body = excluded.response_body
            """,
        answersWithClaims: """
            INSERT INTO idempotency_keys (org_id, idempotency_key, request_hash, status_code, response_body, created_at)
            SELECT @org, a.idempotency_key, a.request_hash, a.status_code, a.response_body, a.created_at
            FROM unnest(@key::text[], @requestHash::text[], @status::integer[], @body::text[], @now::bigint[])
                AS a(idempotency_key, request_hash, status_code, response_body, created_at)
            ON CONFLICT (org_id, idempotency_key) DO UPDATE SET status_code = excluded.status_code, response_body = excluded.response_body
            """,
        answerColumns: [("key", typeof(string)), ("requestHash", typeof(string)), ("status", typeof(int)), ("body", typeof(string)), ("now", typeof(long))],
        read: "SELECT request_hash, status_code, response_body, created_at FROM idempotency_keys WHERE org_id = @org AND idempotency_key = @key",
        answerPending: """
            UPDATE idempotency_keys SET status_code = @status, response_body = @body
            WHERE org_id = @org AND idempotency_key = @key AND status_code = 0 AND created_at = @claimedAt
            """,
        takeOver: """
            UPDATE idempotency_keys SET created_at = @now
            WHERE org_id = @org AND idempotency_key = @key AND status_code = 0 AND created_at = @claimedAt
            """,
        release: "DELETE FROM idempotency_keys WHERE org_id = @org AND idempotency_key = @key AND status_code = 0 AND created_at = @claimedAt",
        fixedStatus: null);

    /// <summary>
    /// Receipts are claimed and answered in the basket's own transaction, so none is ever seen
    /// pending by another; their answer is always the vault transaction's 200, which is not stored.
    /// </summary>
    public static readonly KeySpace Receipts = new(
        claim: """
            INSERT INTO vault_receipts (org_id, shop_id, pos_id, receipt_nr, account_number, request_hash, response_body, created_at)
            VALUES (@org, @shopId, @posId, @receiptNr, @accountNumber, @requestHash, NULL, @now)
            ON CONFLICT (org_id, shop_id, pos_id, receipt_nr) DO NOTHING
            """,
        answer: "UPDATE vault_receipts SET response_body = @body WHERE org_id = @org AND shop_id = @shopId AND pos_id = @posId AND receipt_nr = @receiptNr",
        answerWithClaim: """
            INSERT INTO vault_receipts (org_id, shop_id, pos_id, receipt_nr, account_number, request_hash, response_body, created_at)
            VALUES (@org, @shopId, @posId, @receiptNr, @accountNumber, @requestHash, @body, @now)
            ON CONFLICT (org_id, shop_id, pos_id, receipt_nr) DO UPDATE SET response_body = excluded.response_body
            """,
        answersWithClaims: """
            INSERT INTO vault_receipts (org_id, shop_id, pos_id, receipt_nr, account_number, request_hash, response_body, created_at)
            SELECT @org, a.shop_id, a.pos_id, a.receipt_nr, a.account_number, a.request_hash, a.response_body, a.created_at
            FROM unnest(@shopId::text[], @posId::text[], @receiptNr::text[], @accountNumber::text[], @requestHash::text[], @body::text[], @now::bigint[])
                AS a(shop_id, pos_id, receipt_nr, account_number, request_hash, response_body, created_at)
            ON CONFLICT (org_id, shop_id, pos_id, receipt_nr) DO UPDATE SET response_body = excluded.response_body
            """,
        answerColumns:
        [
            ("shopId", typeof(string)), ("posId", typeof(string)), ("receiptNr", typeof(string)), ("accountNumber", typeof(string)),
            ("requestHash", typeof(string)), ("body", typeof(string)), ("now", typeof(long)),
        ],
        read: """
            SELECT request_hash, CASE WHEN response_body IS NULL THEN 0 ELSE 200 END, response_body, created_at
            FROM vault_receipts WHERE org_id = @org AND shop_id = @shopId AND pos_id = @posId AND receipt_nr = @receiptNr
            """,
        answerPending: null,
        takeOver: null,
        release: null,
        fixedStatus: 200);

    private readonly RowsAtEnd _answers;

    /// <summary>The arguments of the answers' statement after the organization: the key's other columns and the answer.</summary>
    private readonly IReadOnlyList<(string Name, Type Type)> _answerColumns;
    private readonly string? _answerPending;
    private readonly string? _takeOver;
    private readonly string? _release;

    private KeySpace(string claim, string answer, string answerWithClaim, string answersWithClaims, IReadOnlyList<(string Name, Type Type)> answerColumns, string read,
        string? answerPending, string? takeOver, string? release, int? fixedStatus)
    {
        Claim = claim;
        Answer = answer;
        _answerColumns = answerColumns;
        _answers = new RowsAtEnd(answerWithClaim, answersWithClaims, "org", answerColumns);
        Read = read;
        _answerPending = answerPending;
        _takeOver = takeOver;
        _release = release;
        FixedStatus = fixedStatus;
    }

    /// <summary>Inserts the key as pending (status 0, no answer) unless it exists: one row affected when claimed.</summary>
    public string Claim { get; }

    /// <summary>Stores the answer of the claim made in the same transaction.</summary>
    public string Answer { get; }

    /// <summary>
    /// Adds the answer of <paramref name="key"/>, claimed in the same transaction with
    /// <paramref name="requestHash"/> at <paramref name="claimedAtMs"/>, left for the end of the
    /// write's transaction with the answers of every write of a group-commit batch: one statement for
    /// each organization's on PostgreSQL (<see cref="RowsAtEnd"/>).
    /// </summary>
    /// <remarks>
    /// The answer is written as the claim with its answer, an upsert on the key's unique index, rather
    /// than an update of the claimed row: an upsert finds its row through that index whatever the
    /// planner makes of the table, where an <c>UPDATE ... FROM unnest(...)</c> is a join whose plan
    /// PostgreSQL chooses by the table's size when it first prepares it, and keeps. Prepared while
    /// the table was nearly empty (a new ledger's first minute, until autovacuum analyzes it; the
    /// whole of a benchmark's write run on a fresh seed), the join scanned the whole table for every
    /// batch: 1,973 buffers and 6.4 ms a statement under the write mix, against 45 buffers. The
    /// key's row exists (claimed earlier in this transaction), so the insert never takes place; if
    /// it did, it would write the claim and the answer this transaction writes.
    /// </remarks>
    public void AddAnswerAtEnd(StatementBatch batch, IdempotencyKey key, string requestHash, long claimedAtMs, int status, string? body)
    {
        var args = key.Args(("requestHash", requestHash), ("now", claimedAtMs), ("status", status), ("body", body));
        _answers.Add(batch, key.OrgId, [.. _answerColumns.Select(c => args[c.Name])]);
    }

    /// <summary>The request hash, status (0: pending), answer and claim time of a key.</summary>
    public string Read { get; }

    /// <summary>Stores the answer of a pending claim, if it is still this claim (same claim time).</summary>
    public string AnswerPending => _answerPending ?? throw NoPendingClaims();

    /// <summary>Moves a pending claim whose lease ran out to a new claim time, if no one else did first.</summary>
    public string TakeOver => _takeOver ?? throw NoPendingClaims();

    /// <summary>Deletes a pending claim, if it is still this claim.</summary>
    public string Release => _release ?? throw NoPendingClaims();

    /// <summary>The status of every answer in a table that stores none.</summary>
    public int? FixedStatus { get; }

    private static InvalidOperationException NoPendingClaims() =>
        new("Receipts are claimed and answered in one transaction: they have no pending claims.");
}
