using System.Data.Common;
using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Idempotency;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// The rules of the one idempotency store, below HTTP: a key is claimed once however many race for
/// it, a replay in the same transaction sees the answer of the claim before it, and a pending claim
/// taken over after its lease belongs to the run that took it over.
/// </summary>
public abstract class IdempotencyStoreTests(DatabaseFixture db)
{
    private static long NewOrg() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private IdempotencyStore Store => new(db.Database);

    private StatementBatch Batch(DbConnection c, DbTransaction tx) => new(c, tx, db.Database.Dialect);

    /// <summary>Runs <paramref name="units"/> queued behind a unit that holds the writer: on SQLite they commit as one batch.</summary>
    private async Task<T[]> RunTogetherAsync<T>(IReadOnlyList<Func<DbConnection, DbTransaction, Task<T>>> units)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var blocker = db.Database.WriteAsync(async (_, _) =>
        {
            started.TrySetResult();
            await release.Task;
            return 0;
        }, CancellationToken.None);
        await started.Task;
        var tasks = units.Select(u => db.Database.WriteAsync(u, CancellationToken.None)).ToArray();
        release.SetResult();
        await blocker;
        return await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task of_many_requests_racing_for_one_key_one_claims_it_and_the_others_replay_its_answer()
    {
        var key = IdempotencyKey.Request(NewOrg(), "race-1");
        var units = Enumerable.Range(0, 12).Select(i => (Func<DbConnection, DbTransaction, Task<string>>)(async (c, tx) =>
        {
            if (await IdempotencyStore.ClaimAsync(Batch(c, tx), key, "hash", 1_000, CancellationToken.None))
            {
                var answer = Batch(c, tx);
                IdempotencyStore.AddAnswer(answer, key, 201, $"{{\"unit\":{i}}}");
                await answer.RunAsync();
                return "claimed";
            }
            // On SQLite the claim before this one is in the same, uncommitted transaction.
            var stored = await IdempotencyStore.ReadAsync(Batch(c, tx), key, CancellationToken.None);
            return stored is { IsPending: false, StatusCode: 201, Body: { } body } ? "replayed " + body : "not seen";
        })).ToList();

        var outcomes = await RunTogetherAsync(units);

        outcomes.Count(o => o == "claimed").ShouldBe(1);
        var committed = await Store.ReadAsync(key, CancellationToken.None);
        committed.ShouldNotBeNull();
        outcomes.Where(o => o != "claimed").ShouldAllBe(o => o == "replayed " + committed.Value.Body);
    }

    [Fact]
    public async Task a_receipt_replayed_in_the_same_batch_reads_the_first_answer()
    {
        var receipt = IdempotencyKey.Receipt(NewOrg(), "shop", "till", "R-1", "6001");
        var units = Enumerable.Range(0, 2).Select(i => (Func<DbConnection, DbTransaction, Task<StoredAnswer?>>)(async (c, tx) =>
        {
            if (!await IdempotencyStore.ClaimAsync(Batch(c, tx), receipt, "basket", 1_000, CancellationToken.None))
                return await IdempotencyStore.ReadAsync(Batch(c, tx), receipt, CancellationToken.None);
            var answer = Batch(c, tx);
            IdempotencyStore.AddAnswer(answer, receipt, 200, "{\"first\":true}");
            await answer.RunAsync();
            return null;
        })).ToList();

        var outcomes = await RunTogetherAsync(units);

        // Either may claim first (on PostgreSQL they run side by side): one claims, the other replays its answer.
        outcomes.Count(o => o is null).ShouldBe(1);
        outcomes.Single(o => o is not null).ShouldBe(new StoredAnswer("basket", 200, "{\"first\":true}", 1_000));
    }

    /// <summary>
    /// What a write leaves for the end of its transaction (RowsAtEnd): with several in one
    /// transaction, as a group-commit batch holds, PostgreSQL writes all the answers of a kind of key
    /// of one organization in one statement and all its audit records in another, SQLite each in its
    /// own. Each is stored with its own key and organization, a null body and a null key included.
    /// </summary>
    [Fact]
    public async Task answers_and_audit_records_left_for_the_end_of_a_transaction_are_each_stored_under_their_own_key()
    {
        var org = NewOrg();
        var other = NewOrg();
        var keys = Enumerable.Range(0, 3).Select(i => IdempotencyKey.Request(org, $"end-{i}")).ToList();
        var otherKey = IdempotencyKey.Request(other, "end-0");
        var receipts = Enumerable.Range(0, 2).Select(i => IdempotencyKey.Receipt(org, "shop", "till", $"R-end-{i}", "6001")).ToList();
        var longPath = "/v1/customers/" + new string('y', 600);

        await db.Database.WriteAsync(async (c, tx) =>
        {
            foreach (var key in keys.Concat(receipts).Append(otherKey))
                (await IdempotencyStore.ClaimAsync(Batch(c, tx), key, "hash", 1_000, CancellationToken.None)).ShouldBeTrue();
            var batch = Batch(c, tx);
            IdempotencyStore.AddAnswerAtEnd(batch, keys[0], "hash", 1_000, 201, "{\"n\":0}");
            IdempotencyStore.AddAnswerAtEnd(batch, receipts[0], "hash", 1_000, 200, "{\"r\":0}");
            IdempotencyStore.AddAnswerAtEnd(batch, keys[1], "hash", 1_000, 204, null);
            IdempotencyStore.AddAnswerAtEnd(batch, otherKey, "hash", 1_000, 201, "{\"other\":true}");
            WriteAudit.Add(batch, org, "key-a", "POST", "/v1/transactions", 201, "end-0", 1_000);
            WriteAudit.Add(batch, other, "key-o", "POST", "/v1/events", 201, "end-0", 1_500);
            IdempotencyStore.AddAnswerAtEnd(batch, keys[2], "hash", 1_000, 422, "{\"n\":2}");
            IdempotencyStore.AddAnswerAtEnd(batch, receipts[1], "hash", 1_000, 200, "{\"r\":1}");
            WriteAudit.Add(batch, org, "key-b", "PATCH", longPath, 204, null, 2_000);
            // All of it left for the end of the transaction, none in this batch.
            batch.Count.ShouldBe(0);
            return 0;
        }, CancellationToken.None);

        (await Store.ReadAsync(keys[0], CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 201, "{\"n\":0}", 1_000));
        (await Store.ReadAsync(keys[1], CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 204, null, 1_000));
        (await Store.ReadAsync(keys[2], CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 422, "{\"n\":2}", 1_000));
        (await Store.ReadAsync(receipts[0], CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 200, "{\"r\":0}", 1_000));
        (await Store.ReadAsync(receipts[1], CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 200, "{\"r\":1}", 1_000));
        (await Store.ReadAsync(otherKey, CancellationToken.None)).ShouldBe(new StoredAnswer("hash", 201, "{\"other\":true}", 1_000));
        var records = await db.Database.ReadAsync(c => c.QueryAsync<(string KeyId, string Method, string Path, int Status, string? IdempotencyKey, long CreatedAt)>(
            "SELECT key_id, method, path, status_code, idempotency_key, created_at FROM write_audit WHERE org_id = @org ORDER BY created_at",
            new { org }), CancellationToken.None);
        records.ShouldBe([("key-a", "POST", "/v1/transactions", 201, "end-0", 1_000L), ("key-b", "PATCH", longPath[..500], 204, null, 2_000L)]);
        var otherRecords = await db.Database.ReadAsync(c => c.QueryAsync<string>(
            "SELECT key_id FROM write_audit WHERE org_id = @other", new { other }), CancellationToken.None);
        otherRecords.ShouldBe(["key-o"]);
    }

    [Fact]
    public async Task a_run_whose_claim_was_taken_over_can_neither_answer_nor_release_the_key()
    {
        var key = IdempotencyKey.Request(NewOrg(), "run-1");
        var slow = await Store.ClaimPendingAsync(key, "expire", 1_000, CancellationToken.None);
        slow.ShouldNotBeNull();
        (await Store.ClaimPendingAsync(key, "expire", 1_000 + 60_000, CancellationToken.None)).ShouldBeNull();

        var retry = await Store.ClaimPendingAsync(key, "expire", 1_000 + (long)IdempotencyStore.PendingLease.TotalMilliseconds, CancellationToken.None);
        retry.ShouldNotBeNull();

        await Store.ReleaseAsync(slow);
        (await Store.AnswerPendingAsync(slow, 200, "{\"run\":\"slow\"}")).ShouldBeFalse();
        (await Store.ReadAsync(key, CancellationToken.None)).ShouldBe(new StoredAnswer("expire", 0, null, retry.ClaimedAt));
        (await Store.AnswerPendingAsync(retry, 200, "{\"run\":\"retry\"}")).ShouldBeTrue();
        (await Store.ReadAsync(key, CancellationToken.None)).ShouldBe(new StoredAnswer("expire", 200, "{\"run\":\"retry\"}", retry.ClaimedAt));
    }

    [Fact]
    public async Task a_pending_claim_of_another_request_is_never_taken_over_and_a_released_one_is_free_again()
    {
        var key = IdempotencyKey.Request(NewOrg(), "run-2");
        var first = await Store.ClaimPendingAsync(key, "expire as of March", 1_000, CancellationToken.None);
        first.ShouldNotBeNull();

        (await Store.ClaimPendingAsync(key, "expire as of April", 1_000 + 2 * (long)IdempotencyStore.PendingLease.TotalMilliseconds, CancellationToken.None))
            .ShouldBeNull();

        await Store.ReleaseAsync(first);
        (await Store.ReadAsync(key, CancellationToken.None)).ShouldBeNull();
        (await Store.ClaimPendingAsync(key, "expire as of April", 5_000, CancellationToken.None)).ShouldNotBeNull();
    }
}

public sealed class IdempotencyStoreTestsOnSqlite(SqliteDatabase db) : IdempotencyStoreTests(db), IClassFixture<SqliteDatabase>;

public sealed class IdempotencyStoreTestsOnPostgres(PostgresDatabase db) : IdempotencyStoreTests(db), IClassFixture<PostgresDatabase>;
