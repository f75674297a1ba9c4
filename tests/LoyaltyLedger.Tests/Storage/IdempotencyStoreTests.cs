using System.Data.Common;
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
