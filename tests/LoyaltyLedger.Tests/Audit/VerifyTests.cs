using Dapper;
using LoyaltyLedger.Audit;
using LoyaltyLedger.Server.Cli;
using LoyaltyLedger.Tests.Infrastructure;

namespace LoyaltyLedger.Tests.Audit;

/// <summary>The verify audit passes a sound ledger and catches each kind of tampering.</summary>
public abstract class VerifyTests(DatabaseFixture db)
{
    private async Task<(Tenant Tenant, long Customer)> BusyTenantAsync()
    {
        var t = await db.Host.NewTenantAsync();
        var shop = await t.NewShopAsync(expiry: new { kind = "DATE_EARNED", days = 90 });
        var a = await t.NewCustomerAsync();
        var b = await t.NewCustomerAsync();
        await t.BillAsync(shop, a, "V-1", 500);
        await t.AwardAsync(a, "30", "Stars");
        await t.PostOkAsync("/v1/redemptions", new { customerId = a, points = "20" });
        await t.PostOkAsync("/v1/transfers", new { from = new { customerId = a }, to = new { customerId = b }, points = "10" });
        return (t, a);
    }

    private string[] Verify(long orgId) => ["verify", "--org", orgId.ToString(System.Globalization.CultureInfo.InvariantCulture), .. db.CommandLineArgs];

    [Fact]
    public async Task a_sound_ledger_passes_and_the_command_exits_zero()
    {
        var (t, _) = await BusyTenantAsync();
        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldBeEmpty();
        report.Entries.ShouldBeGreaterThan(5);
        (await Commands.RunAsync(Verify(t.OrgId))).ShouldBe(0);
    }

    [Fact]
    public async Task a_stored_balance_that_drifted_from_its_entries_is_reported_and_the_command_exits_one()
    {
        var (t, customer) = await BusyTenantAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE wallets SET balance = balance + 1 WHERE org_id = @org AND owner_id = @customer AND currency_id = 0", new { org = t.OrgId, customer }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.Contains("entries sum to", StringComparison.Ordinal));
        report.Violations.ShouldContain(v => v.Contains("lots hold", StringComparison.Ordinal));
        (await Commands.RunAsync(Verify(t.OrgId))).ShouldBe(1);
    }

    [Fact]
    public async Task a_wallet_that_keeps_its_next_due_lot_later_than_an_open_lot_expires_is_reported()
    {
        // A posting looks for due lots only from the time its wallet keeps: one kept too late would
        // let an expired lot be spent.
        var (t, customer) = await BusyTenantAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE wallets SET lots_due_from = @never WHERE org_id = @org AND owner_id = @customer AND currency_id = 0 AND category = 'REGULAR'",
            new { never = LoyaltyLedger.Ledger.Wallet.NoLotDue, org = t.OrgId, customer }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.Contains("lots_due_from", StringComparison.Ordinal));
        (await Commands.RunAsync(Verify(t.OrgId))).ShouldBe(1);
    }

    [Fact]
    public async Task a_lot_consumed_without_a_movement_is_reported()
    {
        var (t, _) = await BusyTenantAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE lots SET remaining = remaining - 1 WHERE lot_id = (SELECT MIN(lot_id) FROM lots WHERE org_id = @org AND remaining > 0)", new { org = t.OrgId }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.StartsWith("lot ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task a_debit_whose_lot_movements_do_not_add_up_is_reported()
    {
        var (t, _) = await BusyTenantAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "DELETE FROM lot_movements WHERE movement_id = (SELECT MIN(m.movement_id) FROM lot_movements m JOIN ledger_entries e ON e.entry_id = m.entry_id WHERE e.org_id = @org AND e.entry_type = 'DEBIT')",
            new { org = t.OrgId }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.StartsWith("debit entry", StringComparison.Ordinal));
    }

    [Fact]
    public async Task an_event_whose_line_kinds_disagree_with_its_lines_is_reported()
    {
        var (t, customer) = await BusyTenantAsync();
        (await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None)).Violations.ShouldBeEmpty();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE events SET line_kinds = 2 WHERE event_id = (SELECT MIN(event_id) FROM events WHERE org_id = @org AND owner_id = @customer AND event_name = 'TransactionAdd')",
            new { org = t.OrgId, customer }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.Contains("line_kinds", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("UPDATE owner_event_counts SET points_events = points_events + 1 WHERE org_id = @org AND owner_id = @customer")]
    [InlineData("UPDATE owner_event_counts SET events = events - 1 WHERE org_id = @org AND owner_id = @customer")]
    [InlineData("DELETE FROM owner_event_counts WHERE org_id = @org AND owner_id = @customer")]
    [InlineData("INSERT INTO owner_event_counts (org_id, owner_type, owner_id, events, points_events, currency_events) VALUES (@org, 'CUSTOMER', 987654321, 1, 0, 0)")]
    public async Task an_owner_event_count_that_disagrees_with_the_owners_events_is_reported(string tampering)
    {
        var (t, customer) = await BusyTenantAsync();
        (await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None)).Violations.ShouldBeEmpty();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(tampering, new { org = t.OrgId, customer }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.Contains("owner_event_counts", StringComparison.Ordinal));
        (await Commands.RunAsync(Verify(t.OrgId))).ShouldBe(1);
    }

    [Fact]
    public async Task a_negative_balance_where_the_program_forbids_it_is_reported()
    {
        var (t, customer) = await BusyTenantAsync();
        await db.Database.WriteAsync(async (c, tx) =>
        {
            var wallet = await c.ExecuteScalarAsync<long>("SELECT wallet_id FROM wallets WHERE org_id = @org AND owner_id = @customer AND currency_id = 0", new { org = t.OrgId, customer }, tx);
            // A consistent but forbidden state: balance, entries, lots and last line all at -5.
            await c.ExecuteAsync("UPDATE lots SET remaining = 0, original = 0 WHERE wallet_id = @wallet", new { wallet }, tx);
            await c.ExecuteAsync("DELETE FROM lot_movements WHERE lot_id IN (SELECT lot_id FROM lots WHERE wallet_id = @wallet)", new { wallet }, tx);
            return 0;
        }, CancellationToken.None);
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE wallets SET balance = -5 WHERE org_id = @org AND owner_id = @customer AND currency_id = 0", new { org = t.OrgId, customer }, tx), CancellationToken.None);

        var report = await LedgerVerifier.VerifyAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Violations.ShouldContain(v => v.Contains("negative balance", StringComparison.Ordinal));
    }
}

public sealed class VerifyTestsOnSqlite(SqliteDatabase db) : VerifyTests(db), IClassFixture<SqliteDatabase>;

public sealed class VerifyTestsOnPostgres(PostgresDatabase db) : VerifyTests(db), IClassFixture<PostgresDatabase>;
