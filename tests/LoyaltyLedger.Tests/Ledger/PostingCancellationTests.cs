using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>A posting runs its statements with the token it was created with: a caller that gives up stops it, and it writes nothing.</summary>
public abstract class PostingCancellationTests(DatabaseFixture db)
{
    private static long NewScope() => -Random.Shared.NextInt64(1, long.MaxValue / 2);

    private Task<long> CountersAsync(long scope) =>
        db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>("SELECT COUNT(*) FROM id_counters WHERE org_id = @scope", new { scope }), CancellationToken.None);

    [Fact]
    public async Task a_posting_whose_caller_gave_up_stops_at_its_next_statement_and_writes_nothing()
    {
        var scope = NewScope();
        using var caller = new CancellationTokenSource();

        var error = await Record.ExceptionAsync(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, scope, db.Host.Clock.GetUtcNow(), "test", caller.Token);
            await posting.NextIdAsync("first");
            await caller.CancelAsync();
            await posting.NextIdAsync("second");
            return 0;
        }, CancellationToken.None));

        error.ShouldBeAssignableTo<OperationCanceledException>();
        (await CountersAsync(scope)).ShouldBe(0);
    }

    [Fact]
    public async Task a_batch_of_a_posting_whose_caller_gave_up_does_not_run()
    {
        var scope = NewScope();
        using var caller = new CancellationTokenSource();

        var error = await Record.ExceptionAsync(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var posting = new Posting(c, tx, db.Database.Dialect, scope, db.Host.Clock.GetUtcNow(), "test", caller.Token);
            var batch = posting.Batch();
            batch.Execute("INSERT INTO id_counters (org_id, name, last_value) VALUES (@scope, 'batched', 1)", new { scope });
            await caller.CancelAsync();
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None));

        error.ShouldBeAssignableTo<OperationCanceledException>();
        (await CountersAsync(scope)).ShouldBe(0);
    }
}

public sealed class PostingCancellationTestsOnSqlite(SqliteDatabase db) : PostingCancellationTests(db), IClassFixture<SqliteDatabase>;

public sealed class PostingCancellationTestsOnPostgres(PostgresDatabase db) : PostingCancellationTests(db), IClassFixture<PostgresDatabase>;
