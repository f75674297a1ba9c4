using Dapper;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Storage;

/// <summary>
/// A StatementBatch is one round trip on PostgreSQL and one statement after another on SQLite; on
/// both it must behave like the statements run one by one in the caller's transaction.
/// </summary>
public abstract class StatementBatchTests(DatabaseFixture db)
{
    private async Task<string> NewTableAsync()
    {
        var table = "batch_probe_" + Guid.NewGuid().ToString("N")[..8];
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            db.Database.Dialect.Expand($"CREATE TABLE {table} (id {{identity}}, v bigint NOT NULL, note text)"), transaction: tx), CancellationToken.None);
        return table;
    }

    [Fact]
    public async Task statements_run_in_order_each_seeing_the_writes_before_it()
    {
        var table = await NewTableAsync();
        var (inserted, rows, affected) = await db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            var insert = batch.Query($"INSERT INTO {table} (v, note) VALUES (@v, @note) RETURNING id", new { v = 1L, note = (string?)null });
            batch.Execute($"INSERT INTO {table} (v) VALUES (@v)", new Dictionary<string, object?> { ["v"] = 2L });
            var update = batch.Execute($"UPDATE {table} SET v = v + 10");
            var select = batch.Query($"SELECT v, note FROM {table} ORDER BY id");
            var results = await batch.RunAsync();
            return (results.SingleLong(insert), results.Rows(select), results.Affected(update));
        }, CancellationToken.None);

        inserted.ShouldBeGreaterThan(0);
        affected.ShouldBe(2);
        rows.Select(r => Convert.ToInt64(r[0])).ShouldBe([11L, 12L]);
        rows.ShouldAllBe(r => r[1] == null);
    }

    [Fact]
    public async Task a_typed_null_is_stored_as_null_through_a_batch_and_through_dapper()
    {
        var table = await NewTableAsync();
        var rows = await db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            batch.Execute($"INSERT INTO {table} (v, note) VALUES (@v, @note)",
                new Dictionary<string, object?> { ["v"] = 1L, ["note"] = StatementBatch.Typed((string?)null) });
            batch.Execute($"INSERT INTO {table} (v, note) VALUES (@v, @note)",
                new Dictionary<string, object?> { ["v"] = 2L, ["note"] = StatementBatch.Typed((string?)"kept") });
            await batch.RunAsync();
            await c.ExecuteAsync($"INSERT INTO {table} (v, note) VALUES (@v, @note)",
                new Dictionary<string, object?> { ["v"] = 3L, ["note"] = StatementBatch.Typed((string?)null) }, tx);
            return (await c.QueryAsync<(long V, string? Note)>($"SELECT v, note FROM {table} ORDER BY v", transaction: tx)).ToList();
        }, CancellationToken.None);

        rows.ShouldBe([(1L, (string?)null), (2L, "kept"), (3L, (string?)null)]);
    }

    [Fact]
    public async Task a_failing_statement_fails_the_batch_and_the_transaction_keeps_nothing()
    {
        var table = await NewTableAsync();
        await Should.ThrowAsync<System.Data.Common.DbException>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            batch.Execute($"INSERT INTO {table} (v) VALUES (1)");
            batch.Execute($"INSERT INTO {table} (v) VALUES (NULL)");
            batch.Execute($"INSERT INTO {table} (v) VALUES (3)");
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None));

        var count = await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table}"), CancellationToken.None);
        count.ShouldBe(0);
    }

    [Fact]
    public async Task a_failing_statement_is_named_by_its_place_among_the_callers_statements()
    {
        var table = await NewTableAsync();
        var lead = new ProbeLead(table, refuse: false);
        int? failedAt = null, failedWithLead = null;
        await Should.ThrowAsync<System.Data.Common.DbException>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect);
            batch.Execute($"INSERT INTO {table} (v) VALUES (1)");
            batch.Execute($"INSERT INTO {table} (v) VALUES (NULL)");
            try { await batch.RunAsync(); }
            finally { failedAt = batch.FailedAt; }
            return 0;
        }, CancellationToken.None));
        await Should.ThrowAsync<System.Data.Common.DbException>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect) { Leading = lead };
            batch.Execute($"INSERT INTO {table} (v) VALUES (NULL)");
            try { await batch.RunAsync(); }
            finally { failedWithLead = batch.FailedAt; }
            return 0;
        }, CancellationToken.None));

        failedAt.ShouldBe(1);
        // Counted among the caller's own: the statements that went ahead of them are not.
        failedWithLead.ShouldBe(0);
    }

    [Fact]
    public async Task leading_statements_go_once_ahead_of_the_first_batch_that_carries_them_and_the_callers_results_keep_their_places()
    {
        var table = await NewTableAsync();
        var lead = new ProbeLead(table, refuse: false);
        var (first, second) = await db.Database.WriteAsync(async (c, tx) =>
        {
            var one = new StatementBatch(c, tx, db.Database.Dialect) { Leading = lead };
            var read = one.Query($"SELECT v FROM {table} ORDER BY id");
            var firstRows = (await one.RunAsync()).Rows(read);
            var two = new StatementBatch(c, tx, db.Database.Dialect) { Leading = lead };
            two.Execute($"INSERT INTO {table} (v) VALUES (2)");
            var again = two.Query($"SELECT v FROM {table} ORDER BY id");
            return (firstRows, (await two.RunAsync()).Rows(again));
        }, CancellationToken.None);

        lead.Pending.ShouldBeFalse();
        lead.Settled.ShouldBe(1);
        // The lead's row is there before the caller's first statement reads, and only once.
        first.Select(r => Convert.ToInt64(r[0])).ShouldBe([100L]);
        second.Select(r => Convert.ToInt64(r[0])).ShouldBe([100L, 2L]);
    }

    [Fact]
    public async Task a_lead_is_settled_when_a_statement_after_it_fails_and_what_it_says_comes_first()
    {
        var table = await NewTableAsync();
        var lead = new ProbeLead(table, refuse: true);
        await Should.ThrowAsync<InvalidOperationException>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect) { Leading = lead };
            batch.Execute($"INSERT INTO {table} (v) VALUES (NULL)");
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None));

        // The claim a lead stands for is settled with what it got, the error after it notwithstanding.
        lead.Settled.ShouldBe(1);
    }

    [Fact]
    public async Task a_lead_that_refuses_what_it_got_fails_the_batch_and_the_transaction_keeps_nothing()
    {
        var table = await NewTableAsync();
        await Should.ThrowAsync<InvalidOperationException>(() => db.Database.WriteAsync(async (c, tx) =>
        {
            var batch = new StatementBatch(c, tx, db.Database.Dialect) { Leading = new ProbeLead(table, refuse: true) };
            batch.Execute($"INSERT INTO {table} (v) VALUES (1)");
            await batch.RunAsync();
            return 0;
        }, CancellationToken.None));

        (await db.Database.ReadAsync(c => c.ExecuteScalarAsync<long>($"SELECT COUNT(*) FROM {table}"), CancellationToken.None)).ShouldBe(0);
    }

    /// <summary>
    /// Leading statements that insert a row of 100 (its id returned) and note it (its count
    /// affected), and check and count what they are settled with; with <c>refuse</c>, settling throws.
    /// </summary>
    private sealed class ProbeLead(string table, bool refuse) : ILeadingStatements
    {
        private int _insert = -1;
        private int _note = -1;

        public int Settled;

        public bool Pending => _insert < 0;

        public void Add(StatementBatch batch)
        {
            _insert = batch.Query($"INSERT INTO {table} (v) VALUES (100) RETURNING id");
            _note = batch.Execute($"UPDATE {table} SET note = 'lead' WHERE v = 100");
        }

        public void Settle(BatchResults results)
        {
            results.Count.ShouldBe(2);
            results.SingleLong(_insert).ShouldBeGreaterThan(0);
            results.Affected(_note).ShouldBe(1);
            Settled++;
            if (refuse) throw new InvalidOperationException("refused by the lead");
        }
    }

    [Fact]
    public async Task a_bill_links_its_event_and_each_lot_to_the_line_it_credits()
    {
        // The bill's event id and each lot's credit line are filled in by statements batched after
        // the inserts ({lastEventId}, {lastEntryId}), not from ids read back first.
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(currencies: ["Stars", "Stamps"]);
        await t.PostOkAsync($"/v1/programs/{shop.ProgramId}/currencies", new { name = "Gems", earnRate = "0.5" });
        var customer = await t.NewCustomerAsync();
        var bill = await t.BillAsync(shop, customer, "B-1", 40m);

        var eventId = bill.GetProperty("eventId").GetInt64();
        var billId = bill.GetProperty("billId").GetInt64();
        var lines = await db.Database.ReadAsync(async c =>
        {
            var billEvent = await c.ExecuteScalarAsync<long>("SELECT event_id FROM bills WHERE bill_id = @billId", new { billId });
            var lots = await c.QueryAsync<(long EntryId, long LotWallet, long EntryWallet, long Original, long Points, long EntryEvent)>(
                """
                SELECT le.entry_id, l.wallet_id, le.wallet_id, l.original, le.points, le.event_id
                FROM lots l JOIN ledger_entries le ON le.entry_id = l.credit_entry_id
                WHERE l.org_id = @org AND l.is_debt = 0
                """, new { org = t.OrgId });
            return (billEvent, lots.ToList());
        }, CancellationToken.None);

        lines.billEvent.ShouldBe(eventId);
        var credited = bill.GetProperty("entries").EnumerateArray().Select(e => e.GetProperty("entryId").GetInt64()).ToList();
        credited.Count.ShouldBe(2);
        lines.Item2.Where(l => l.EntryEvent == eventId).Select(l => l.EntryId).Order().ShouldBe(credited.Order());
        lines.Item2.ShouldAllBe(l => l.LotWallet == l.EntryWallet && l.Original == l.Points);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}

public sealed class StatementBatchTestsOnSqlite(SqliteDatabase db) : StatementBatchTests(db), IClassFixture<SqliteDatabase>;

public sealed class StatementBatchTestsOnPostgres(PostgresDatabase db) : StatementBatchTests(db), IClassFixture<PostgresDatabase>
{
    [Fact]
    public async Task a_statement_whose_argument_is_sometimes_null_stays_one_prepared_statement()
    {
        // An untyped null goes to PostgreSQL as a parameter of unknown type; a statement run with a
        // null and then with a value would not match what Npgsql prepared for the other, and
        // PostgreSQL would parse and plan it again on each flip. Typed nulls keep one statement, with
        // the types of the values, for an object's properties and a dictionary's typed entries alike.
        var table = "batch_probe_" + Guid.NewGuid().ToString("N")[..8];
        var prepared = await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync($"CREATE TABLE {table} (id bigserial, v bigint, note text)", transaction: tx);
            var byObject = $"INSERT INTO {table} (v, note) VALUES (@v, @note)";
            var byDictionary = $"INSERT INTO {table} (note, v) VALUES (@note, @v)";
            foreach (var (v, note) in new (long?, string?)[] { (null, null), (1, null), (null, "a"), (2, "b"), (null, null), (3, "c"), (null, null) })
            {
                var batch = new StatementBatch(c, tx, db.Database.Dialect);
                batch.Execute(byObject, new { v, note });
                batch.Execute(byDictionary, new Dictionary<string, object?> { ["v"] = StatementBatch.Typed(v), ["note"] = StatementBatch.Typed(note) });
                await batch.RunAsync();
            }
            return (await c.QueryAsync<string>(
                $"SELECT parameter_types::text || ' ' || (generic_plans + custom_plans) FROM pg_prepared_statements WHERE statement LIKE '%{table}%' ORDER BY statement", transaction: tx)).ToList();
        }, CancellationToken.None);

        // Npgsql prepares a statement at its second use (LedgerDatabase), so each of the six runs
        // after the first ran the one statement prepared, with the values' types. With untyped nulls
        // the statement left at the end had run once: it had been prepared again at each flip.
        prepared.ShouldBe(["{bigint,text} 6", "{text,bigint} 6"], ignoreOrder: true);
    }
}
