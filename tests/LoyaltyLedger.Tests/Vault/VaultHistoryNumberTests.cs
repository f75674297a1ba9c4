using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tests.Infrastructure;
using static LoyaltyLedger.Tests.Vault.VaultBuilders;

namespace LoyaltyLedger.Tests.Vault;

/// <summary>
/// The vault history's numbers (ledger_entries.history_seq, events.history_seq, wallets.history_count):
/// every movement of a wallet's history numbered by its place, kept by every basket (lines and
/// voucher redemptions, in order or stamped before movements already numbered), backfilled by the
/// migration, checked by verify, and a page by offset reads the same slice as the whole history.
/// </summary>
public abstract class VaultHistoryNumberTests(DatabaseFixture db)
{
    private static readonly DateTimeOffset Start = new(2025, 6, 1, 9, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// Loads, redemptions, voucher purchases (their Convert lines) and voucher redemptions, two of
    /// them posted on a clock moved back among movements already posted, as a posting that took the
    /// wallet's lock after a later-stamped one would be.
    /// </summary>
    private async Task<(Tenant T, VaultSetup V)> BusyVaultAsync()
    {
        db.Host.Clock.Set(Start);
        var t = await db.Host.NewTenantAsync();
        var v = await t.NewVaultAsync();
        var voucherId = (await t.NewVoucherAsync(v.ProgramId, "10", validDays: 300)).GetProperty("voucherId").GetInt64();
        async Task<string> BuyAsync() =>
            (await t.PostBasketAsync(v, Basket(v.ProgramId, voucherPurchases: [new { voucherId }])))
                .GetProperty("loyaltyPrograms")[0].GetProperty("vouchersPurchased")[0].GetProperty("serialId").GetString()!;
        async Task AtAsync(double hours, object basket)
        {
            db.Host.Clock.Set(Start.AddHours(hours));
            await t.PostBasketAsync(v, basket);
        }

        await AtAsync(0, Basket(v.ProgramId, loads: [new { value = 100 }]));
        db.Host.Clock.Set(Start.AddHours(1));
        var first = await BuyAsync();
        db.Host.Clock.Set(Start.AddHours(2));
        var second = await BuyAsync();
        await AtAsync(5, Basket(v.ProgramId, loads: [new { value = 50 }], voucherRedemptions: [new { serialId = first }]));
        await AtAsync(6, Basket(v.ProgramId, loads: [new { value = 20 }], redemptions: [new { value = 5 }]));
        // Back among what is posted: a line and a voucher redemption stamped before the movements of 5 and 6 h.
        await AtAsync(3, Basket(v.ProgramId, loads: [new { value = 7 }], voucherRedemptions: [new { serialId = second }]));
        await AtAsync(3, Basket(v.ProgramId, redemptions: [new { value = 2 }]));
        await AtAsync(7, Basket(v.ProgramId, loads: [new { value = 1 }], voucherRedemptions: [new { serialId = second, @void = true }]));
        return (t, v);
    }

    /// <summary>Every page at <paramref name="limit"/> a page against the same slice of the whole history (read unpaged).</summary>
    private static async Task PagesMatchTheWholeHistoryAsync(Tenant t, VaultSetup v, int limit)
    {
        var everything = (await t.HistoryAsync(v)).Select(h => h.GetRawText()).ToList();
        everything.Count.ShouldBeGreaterThan(limit * 2);
        for (var offset = 0; offset < everything.Count + limit; offset += limit)
        {
            var page = (await t.HistoryAsync(v, $"?limit={limit}&offset={offset}")).Select(h => h.GetRawText()).ToList();
            page.ShouldBe(everything.Skip(offset).Take(limit).ToList(), $"limit {limit} offset {offset}");
        }
    }

    private Task<List<string>> NumbersAsync(long orgId) =>
        db.Database.ReadAsync(async c =>
        {
            var lines = await c.QueryAsync<(long Seq, long Entry)>(
                "SELECT history_seq, entry_id FROM ledger_entries WHERE org_id = @orgId AND history_seq IS NOT NULL ORDER BY history_seq", new { orgId });
            var redemptions = await c.QueryAsync<(long Seq, long Event)>(
                "SELECT history_seq, event_id FROM events WHERE org_id = @orgId AND history_seq IS NOT NULL ORDER BY history_seq", new { orgId });
            var counts = await c.QueryAsync<(long Wallet, long Count)>(
                "SELECT wallet_id, history_count FROM wallets WHERE org_id = @orgId ORDER BY wallet_id", new { orgId });
            return lines.Select(l => $"{l.Seq}: line {l.Entry}").Concat(redemptions.Select(r => $"{r.Seq}: redemption {r.Event}"))
                .Concat(counts.Select(w => $"wallet {w.Wallet}: {w.Count}")).Order(StringComparer.Ordinal).ToList();
        }, CancellationToken.None);

    [Fact]
    public async Task every_page_by_offset_reads_the_same_slice_as_the_whole_history_with_movements_stamped_out_of_order()
    {
        var (t, v) = await BusyVaultAsync();

        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
        var types = (await t.HistoryAsync(v)).Select(h => h.GetProperty("transactionType").GetString()).ToList();
        types.Count(x => x == "RedeemVoucher").ShouldBe(3);
        // The voucher redemption stamped at 3 h is shown (and numbered) before the one at 5 h.
        types.IndexOf("RedeemVoucher").ShouldBeLessThan(types.Count / 2);
        await PagesMatchTheWholeHistoryAsync(t, v, 2);
        await PagesMatchTheWholeHistoryAsync(t, v, 3);
    }

    [Fact]
    public async Task every_page_of_a_window_reads_the_same_slice_as_the_whole_window_and_the_window_is_the_movements_stamped_in_it()
    {
        var (t, v) = await BusyVaultAsync();
        var everything = await t.HistoryAsync(v);
        static string Iso(DateTimeOffset at) => Uri.EscapeDataString(at.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture));
        // Windows that start and end on instants holding movements (3 h holds three, among them the
        // voucher redemption stamped back), between them, and past either end.
        foreach (var (from, to) in new (double?, double?)[] { (3, 6), (2.5, 5.5), (3, null), (null, 5), (5, 5.001), (0, 100), (7.5, null) })
        {
            var window = (from is { } f ? $"&from={Iso(Start.AddHours(f))}" : "") + (to is { } x ? $"&to={Iso(Start.AddHours(x))}" : "");
            var inWindow = everything.Where(h =>
            {
                var at = DateTimeOffset.Parse(h.GetProperty("dateTime").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
                return (from is null || at >= Start.AddHours(from.Value)) && (to is null || at < Start.AddHours(to.Value));
            }).Select(h => h.GetRawText()).ToList();
            var whole = (await t.HistoryAsync(v, "?" + window.TrimStart('&'))).Select(h => h.GetRawText()).ToList();
            whole.ShouldBe(inWindow, window);
            foreach (var limit in new[] { 1, 2 })
            {
                for (var offset = 0; offset < whole.Count + limit; offset += limit)
                {
                    var page = (await t.HistoryAsync(v, $"?limit={limit}&offset={offset}{window}")).Select(h => h.GetRawText()).ToList();
                    page.ShouldBe(whole.Skip(offset).Take(limit).ToList(), $"{window} limit {limit} offset {offset}");
                }
            }
        }
    }

    [Fact]
    public async Task verify_reports_a_movement_whose_number_is_not_its_place_in_the_wallets_history()
    {
        var (t, _) = await BusyVaultAsync();
        await db.Database.WriteAsync((c, tx) => c.ExecuteAsync(
            "UPDATE ledger_entries SET history_seq = history_seq + 100 WHERE org_id = @org AND history_seq = 1", new { org = t.OrgId }, tx), CancellationToken.None);

        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldContain(v => v.Contains("history_seq", StringComparison.Ordinal));
    }

    [Fact]
    public async Task renumber_numbers_the_history_a_server_older_than_the_migration_wrote_after_it()
    {
        var (t, v) = await BusyVaultAsync();
        var expected = await NumbersAsync(t.OrgId);
        // An older server posting after `migrate`: the last hours' lines and voucher redemption carry
        // no numbers, and the wallet's count and latest numbered time never moved past the migration.
        var since = Start.AddHours(5).ToUnixTimeMilliseconds();
        await db.Database.WriteAsync(async (c, tx) =>
        {
            var lines = await c.ExecuteAsync("UPDATE ledger_entries SET history_seq = NULL WHERE org_id = @org AND created_at >= @since AND history_seq IS NOT NULL", new { org = t.OrgId, since }, tx);
            var redemptions = await c.ExecuteAsync("UPDATE events SET history_seq = NULL WHERE org_id = @org AND created_at >= @since AND history_seq IS NOT NULL", new { org = t.OrgId, since }, tx);
            (lines * redemptions).ShouldBeGreaterThan(0);
            // And a number where none belongs: on a voucher purchase, which no server writes, but verify checks.
            (await c.ExecuteAsync("""
                UPDATE events SET history_seq = 99 WHERE org_id = @org AND event_id = (
                    SELECT MIN(event_id) FROM events WHERE org_id = @org AND event_name = 'VoucherPurchase')
                """, new { org = t.OrgId }, tx)).ShouldBe(1);
            return await c.ExecuteAsync("UPDATE wallets SET history_count = history_count - @n, history_last_at = @before WHERE org_id = @org AND history_count > 0",
                new { org = t.OrgId, n = lines + redemptions, before = since - 1 }, tx);
        }, CancellationToken.None);
        var violations = await LedgerAudit.ViolationsAsync(db.Database, t.OrgId);
        violations.ShouldContain(x => x.Contains("history_seq", StringComparison.Ordinal));
        violations.ShouldContain(x => x.Contains("wallets.history_last_at", StringComparison.Ordinal));

        var report = await PageNumbers.RenumberAsync(db.Database, t.OrgId, CancellationToken.None);
        report.Lines.ShouldBeGreaterThan(0);
        report.VoucherRedemptions.ShouldBeGreaterThan(0);
        report.Wallets.ShouldBe(1);

        await NumberedAsBeforeAndNumberingOnAsync(t, v, expected);
    }

    [Fact]
    public async Task the_migration_numbers_the_history_of_a_database_written_before_it()
    {
        var (t, v) = await BusyVaultAsync();
        var expected = await NumbersAsync(t.OrgId);
        expected.ShouldContain(n => n.Contains("redemption", StringComparison.Ordinal));
        // The database as it was before migration 23: no numbers, no counts, no indexes, not recorded.
        await db.Database.WriteAsync(async (c, tx) =>
        {
            await c.ExecuteAsync("DROP INDEX ix_ledger_entries_wallet_history", transaction: tx);
            await c.ExecuteAsync("DROP INDEX ix_events_voucher_history", transaction: tx);
            await c.ExecuteAsync("CREATE INDEX ix_ledger_entries_wallet ON ledger_entries (wallet_id, entry_id)", transaction: tx);
            foreach (var (table, column) in new[] { ("ledger_entries", "history_seq"), ("events", "history_seq"), ("wallets", "history_count"), ("wallets", "history_last_at") })
                await c.ExecuteAsync($"ALTER TABLE {table} DROP COLUMN {column}", transaction: tx);
            return await c.ExecuteAsync("DELETE FROM schema_migrations WHERE version = 23", transaction: tx);
        }, CancellationToken.None);

        await Migrations.ApplyAsync(db.Database, CancellationToken.None);

        await NumberedAsBeforeAndNumberingOnAsync(t, v, expected);
    }

    /// <summary>
    /// The numbers are those the baskets gave, verify passes, every page reads its slice, and a
    /// basket posted after numbers on from the wallet's count and time.
    /// </summary>
    private async Task NumberedAsBeforeAndNumberingOnAsync(Tenant t, VaultSetup v, List<string> expected)
    {
        (await NumbersAsync(t.OrgId)).ShouldBe(expected);
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
        await PagesMatchTheWholeHistoryAsync(t, v, 2);
        db.Host.Clock.Set(Start.AddHours(8));
        await t.PostBasketAsync(v, Basket(v.ProgramId, loads: [new { value = 3 }]));
        (await LedgerAudit.ViolationsAsync(db.Database, t.OrgId)).ShouldBeEmpty();
    }
}

public sealed class VaultHistoryNumberTestsOnSqlite(SqliteDatabase db) : VaultHistoryNumberTests(db), IClassFixture<SqliteDatabase>;

public sealed class VaultHistoryNumberTestsOnPostgres(PostgresDatabase db) : VaultHistoryNumberTests(db), IClassFixture<PostgresDatabase>;
