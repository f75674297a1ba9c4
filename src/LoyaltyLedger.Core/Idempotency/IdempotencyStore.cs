using System.Globalization;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Idempotency;

/// <summary>What the store holds for a key: the request that claimed it and, once it is done, its answer.</summary>
/// <param name="RequestHash">What makes two requests the same (the caller decides: method, path, body, ...).</param>
/// <param name="StatusCode">The answer's status; 0 while the claim is pending.</param>
/// <param name="Body">The answer's body (null for a 204, and while pending).</param>
/// <param name="ClaimedAt">When the key was claimed (or a pending claim last taken over), Unix milliseconds.</param>
public readonly record struct StoredAnswer(string RequestHash, int StatusCode, string? Body, long ClaimedAt)
{
    /// <summary>Claimed by a write still running (or one whose server died) that has not answered yet.</summary>
    public bool IsPending => StatusCode == 0;
}

/// <summary>A pending claim made by <see cref="IdempotencyStore.ClaimPendingAsync"/>; only it can answer or release the key.</summary>
public sealed record PendingClaim(IdempotencyKey Key, long ClaimedAt);

/// <summary>
/// The one idempotency store of every API: a key (<see cref="IdempotencyKey"/>) is claimed once, its
/// answer is stored with it, and a later request with the same key gets that answer instead of
/// writing again.
/// </summary>
/// <remarks>
/// <para>A key is claimed by inserting it under a unique constraint (<c>ON CONFLICT DO NOTHING</c>),
/// never by looking first and inserting after, so of two racing requests exactly one claims it: on
/// PostgreSQL the second insert waits for the transaction holding the key and then inserts nothing;
/// on SQLite writers are serialized.</para>
/// <para>A write of one transaction claims its key in that transaction (<see cref="ClaimAsync"/>, or
/// <see cref="ClaimFirst"/> with the posting's first statements) and stores its answer in it
/// (<see cref="AddAnswer"/>): the key, the answer and the write commit or roll back together, so a
/// refused or failed write leaves its key unclaimed.</para>
/// <para>A write of several transactions (the expiry run) claims the key first, as pending, in a
/// transaction of its own (<see cref="ClaimPendingAsync"/>), answers it when done
/// (<see cref="AnswerPendingAsync"/>) or releases it if it fails (<see cref="ReleaseAsync"/>). A
/// pending claim holds its key for <see cref="PendingLease"/>; after that a retry with the same
/// request takes it over (the claim of a server that died), and the run that lost it can neither
/// answer nor release it any more.</para>
/// <para>What a replay answers is the caller's to decide from <see cref="StoredAnswer"/>: another
/// request under the key, a pending claim, or the stored answer.</para>
/// </remarks>
public sealed class IdempotencyStore(LedgerDatabase database)
{
    /// <summary>
    /// How long a pending claim holds its key. A run whose server died leaves its claim pending;
    /// after this a retry with the same key runs the write again (the expiry run may: running it
    /// twice writes nothing more).
    /// </summary>
    public static readonly TimeSpan PendingLease = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Claims <paramref name="key"/> in the write's own transaction (runs <paramref name="transaction"/>,
    /// a batch of it). False when the key is already claimed: the request is a replay and must write nothing.
    /// </summary>
    public static async Task<bool> ClaimAsync(StatementBatch transaction, IdempotencyKey key, string requestHash, long nowMs, CancellationToken ct)
    {
        var claim = transaction.Execute(key.Space.Claim, key.Args(("requestHash", requestHash), ("now", nowMs)));
        return (await transaction.RunAsync(ct)).Affected(claim) == 1;
    }

    /// <summary>
    /// <see cref="ClaimAsync"/> as statements held to go ahead of a posting's first round trip
    /// (<see cref="Ledger.Posting.SendFirst"/>), so that the claim costs no round trip of its own. Once
    /// it has gone, a key found claimed throws <see cref="KeyAlreadyClaimed"/>: the request is a replay,
    /// and the write, with whatever else that round trip wrote, is rolled back.
    /// </summary>
    public static LeadingClaim ClaimFirst(IdempotencyKey key, string requestHash, long nowMs) => new(key, requestHash, nowMs);

    /// <summary>The claim of <see cref="ClaimFirst"/>.</summary>
    public sealed class LeadingClaim(IdempotencyKey key, string requestHash, long nowMs) : ILeadingStatements
    {
        private int _claim = -1;

        public bool Pending => _claim < 0;

        /// <summary>True once the claim has gone and the key is this write's.</summary>
        public bool Claimed { get; private set; }

        public void Add(StatementBatch batch) => _claim = batch.Execute(key.Space.Claim, key.Args(("requestHash", requestHash), ("now", nowMs)));

        public void Settle(BatchResults results)
        {
            if (results.Affected(_claim) != 1) throw new KeyAlreadyClaimed();
            Claimed = true;
        }

        /// <summary><see cref="IdempotencyStore.AddAnswerAtEnd"/> for this claim's key, with the request hash and time it was claimed with.</summary>
        public void AddAnswerAtEnd(StatementBatch batch, int status, string? body) =>
            IdempotencyStore.AddAnswerAtEnd(batch, key, requestHash, nowMs, status, body);
    }

    /// <summary>
    /// Adds the storing of the answer of the key claimed by <see cref="ClaimAsync"/> to a batch of the
    /// same transaction (with the write's last statements: no round trip of its own).
    /// </summary>
    public static void AddAnswer(StatementBatch batch, IdempotencyKey key, int status, string? body) =>
        batch.Execute(key.Space.Answer, AnswerArgs(key, status, body));

    /// <summary>
    /// <see cref="AddAnswer"/>, left for the very end of the transaction when it is one of
    /// <see cref="LedgerDatabase.WriteAsync{T}"/> (<see cref="RowsAtEnd"/>): with the answers of
    /// every write of a group-commit transaction, in the round trip that writes their outbox rows
    /// (on PostgreSQL in one statement), instead of one of each write's own. Only for a key whose
    /// replays read the answer after the commit: inside the transaction the claim reads as pending
    /// until then. <paramref name="requestHash"/> and <paramref name="claimedAtMs"/> are the claim's
    /// (the answer goes as the claim with its answer, see <c>KeySpace.AddAnswerAtEnd</c>). A
    /// transaction claims a key once, so it never holds two answers of one key (two in one statement
    /// would fail it: an upsert changes a row once).
    /// </summary>
    public static void AddAnswerAtEnd(StatementBatch batch, IdempotencyKey key, string requestHash, long claimedAtMs, int status, string? body)
    {
        CheckStatus(key, status);
        key.Space.AddAnswerAtEnd(batch, key, requestHash, claimedAtMs, status, body);
    }

    private static object AnswerArgs(IdempotencyKey key, int status, string? body)
    {
        CheckStatus(key, status);
        // A 204 stores no body: typed, the null keeps the statement the one prepared for bodies.
        return key.Args(("status", status), ("body", StatementBatch.Typed(body)));
    }

    private static void CheckStatus(IdempotencyKey key, int status)
    {
        if (key.Space.FixedStatus is { } only && status != only)
            throw new ArgumentOutOfRangeException(nameof(status), status, $"This kind of key answers {only} only.");
    }

    /// <summary>
    /// What is stored under <paramref name="key"/> as the write's own transaction sees it: a claim that
    /// made this one a replay may be uncommitted yet, made earlier in the same transaction.
    /// </summary>
    public static async Task<StoredAnswer?> ReadAsync(StatementBatch transaction, IdempotencyKey key, CancellationToken ct)
    {
        var read = transaction.Query(key.Space.Read, key.Args());
        var rows = (await transaction.RunAsync(ct)).Rows(read);
        return rows.Count == 0 ? null : ToAnswer(rows[0]);
    }

    /// <summary>What is stored under <paramref name="key"/>, as committed.</summary>
    public Task<StoredAnswer?> ReadAsync(IdempotencyKey key, CancellationToken ct) =>
        database.ReadAsync(async c =>
        {
            await using var reader = await c.ExecuteReaderAsync(new CommandDefinition(key.Space.Read, new DynamicParameters(key.Args()), cancellationToken: ct));
            if (!await reader.ReadAsync(ct)) return (StoredAnswer?)null;
            var row = new object?[reader.FieldCount];
            for (var i = 0; i < row.Length; i++) row[i] = reader.IsDBNull(i) ? null : reader.GetValue(i);
            return ToAnswer(row);
        }, ct);

    /// <summary>
    /// Claims <paramref name="key"/> as pending, in a transaction of its own, for a write of several
    /// transactions; takes over a pending claim of the same request whose lease has run out. Null
    /// when the key is someone else's (answered, pending, or another request's): the request is a
    /// replay.
    /// </summary>
    public async Task<PendingClaim?> ClaimPendingAsync(IdempotencyKey key, string requestHash, long nowMs, CancellationToken ct)
    {
        var claimed = await database.WriteAsync((c, tx) => ClaimAsync(new StatementBatch(c, tx, database.Dialect, ct), key, requestHash, nowMs, ct), ct);
        if (claimed) return new PendingClaim(key, nowMs);

        var stored = await ReadAsync(key, ct);
        if (stored is not { IsPending: true } pending || pending.RequestHash != requestHash
            || nowMs - pending.ClaimedAt < (long)PendingLease.TotalMilliseconds)
            return null;
        // The claim of a run that never finished (its server died): take it over, unless another
        // retry just did.
        var takenOver = await database.WriteAsync((c, tx) => c.ExecuteAsync(new CommandDefinition(
            key.Space.TakeOver, new DynamicParameters(key.Args(("now", nowMs), ("claimedAt", pending.ClaimedAt))), tx, cancellationToken: ct)), ct) == 1;
        return takenOver ? new PendingClaim(key, nowMs) : null;
    }

    /// <summary>
    /// Stores the answer of a pending claim, with <paramref name="alongside"/> (the write's audit
    /// record) in the same transaction. False, writing nothing, when the claim is no longer this one
    /// (a retry took it over after its lease ran out): that run's answer stands. Not cancellable: a
    /// run that is done stores its answer even when its client has gone, so that the retry gets it.
    /// </summary>
    public Task<bool> AnswerPendingAsync(PendingClaim claim, int status, string? body, Action<StatementBatch>? alongside = null) =>
        database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, database.Dialect);
            var answered = batch.Execute(claim.Key.Space.AnswerPending, claim.Key.Args(("status", status), ("body", StatementBatch.Typed(body)), ("claimedAt", claim.ClaimedAt)));
            if ((await batch.RunAsync(CancellationToken.None)).Affected(answered) == 0) return false;
            if (alongside is not null)
            {
                alongside(batch);
                await batch.RunAsync(CancellationToken.None);
            }
            return true;
        }, CancellationToken.None);

    /// <summary>
    /// Releases a pending claim whose write failed or was refused, so that it does not use up its
    /// key (as a rolled-back write of one transaction does not). When the database cannot be reached
    /// the claim stays pending until its lease runs out.
    /// </summary>
    public async Task ReleaseAsync(PendingClaim claim)
    {
        try
        {
            await database.WriteAsync((c, tx) => c.ExecuteAsync(new CommandDefinition(
                claim.Key.Space.Release, new DynamicParameters(claim.Key.Args(("claimedAt", claim.ClaimedAt))), tx)), CancellationToken.None);
        }
        catch (Exception)
        {
            // The database is unreachable: the claim stays pending until its lease runs out.
        }
    }

    private static StoredAnswer ToAnswer(object?[] row) => new(
        (string)row[0]!,
        Convert.ToInt32(row[1], CultureInfo.InvariantCulture),
        (string?)row[2],
        Convert.ToInt64(row[3], CultureInfo.InvariantCulture));
}

/// <summary>
/// A write's Idempotency-Key, claimed with its posting's first statements
/// (<see cref="IdempotencyStore.ClaimFirst"/>), was already claimed: the request is a replay, and its
/// transaction's work is rolled back.
/// </summary>
public sealed class KeyAlreadyClaimed() : Exception("The Idempotency-Key was already claimed: the request is a replay.");
