using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Postings;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Stores;
using LoyaltyLedger.Vault;

namespace LoyaltyLedger.Server.Demo;

/// <summary>
/// The demo organization: the customers, group, programs, currencies, stores and tills named in the
/// points-ledger spec's examples, with January to May 2024 of bills, allocations, named events,
/// redemptions and transfers around them, so that the spec's example requests return data of the
/// same shape; and for the vault, a voucher definition and a voucher one customer holds. Postings go through the same code as the API, each stamped with its demo date.
/// </summary>
public static class DemoData
{
    public const string OrganizationName = "LoyaltyLedger demo";
    public const long NareshId = 64035151;
    public const long KamalId = 170940055;
    public const long CurrencyCustomerId = 423725119;
    public const long PlainCustomerId = 98662653;
    public const long GroupId = 381335652;
    public const long DefaultProgramId = 626;
    public const long CardProgramId = 817;
    public const long SevenProgramId = 469;
    public const long SevenSourceProgramId = 805;
    public const long FreeCoffeeVoucherId = 1;
    /// <summary>The serial of the voucher Priya holds: fixed, so the README's basket can redeem it.</summary>
    public const string PriyasVoucherSerial = "VDEMO0000000000000001";
    /// <summary>The alternate currency the spec's example request names (alternateCurrencyNames=acNjnkvfgfdeun).</summary>
    public const string SpecCurrencyName = "acNjnkvfgfdeun";

    public sealed record Result(long OrgId, bool Seeded);

    /// <summary>Seeds the demo once, and (re)sets its admin key to the given credentials.</summary>
    public static async Task<Result> EnsureAsync(LedgerDatabase db, string keyId, string secret, CancellationToken ct)
    {
        var existing = await Tenants.FindOrganizationAsync(db, OrganizationName, ct);
        var org = existing ?? await Tenants.CreateOrganizationAsync(db, OrganizationName, TimeProvider.System, ct);
        if (existing is null) await SeedAsync(db, org.OrgId, ct);
        await Tenants.IssueKeyAsync(db, org.OrgId, KeyRole.Admin, TimeProvider.System, ct, keyId, secret, "demo admin key");
        return new Result(org.OrgId, existing is null);
    }

    private static Task PostAsync(LedgerDatabase db, long orgId, DateTimeOffset at, Func<Posting, Task> work, CancellationToken ct) =>
        db.WriteAsync(async (c, tx) => { await work(new Posting(c, tx, db.Dialect, orgId, at, "demo-seed", ct)); return 0; }, ct);

    private static DateTimeOffset At(int month, int day, int hour, int minute, int second = 0) =>
        new(2024, month, day, hour, minute, second, TimeSpan.Zero);

    public static async Task SeedAsync(LedgerDatabase db, long orgId, CancellationToken ct)
    {
        // Programs and currencies, stores and tills: 2024-01-02. Program 626's points expire by date
        // earned, ten years on: the README's examples run on a demo served today, so no demo point may
        // expire (and change the answers they show) for years after the demo's 2024 activity.
        await PostAsync(db, orgId, At(1, 2, 9, 0), async p =>
        {
            await ProgramCatalog.CreateAsync(p, new NewProgram("David Jones- Default Program", DefaultProgramId, Concept: "supermarket",
                EarnRate: Points.Parse("0.1"), IsDefault: true,
                Expiry: new ExpiryPolicy { Kind = ExpiryPolicy.DateEarned, Months = 120, EndOfMonth = true },
                Currencies:
                [
                    new NewCurrency("Tier-points"), new NewCurrency("Pebbles"), new NewCurrency("Boost"),
                    new NewCurrency("Stars", Points.Parse("0.5")), new NewCurrency("Stamps", Points.Parse("0.5")),
                ]));
            await ProgramCatalog.CreateAsync(p, new NewProgram("David Jones- Card Program", CardProgramId, Concept: "supermarket"));
            await ProgramCatalog.CreateAsync(p, new NewProgram("Default Program", SevenProgramId, Concept: "entertainment",
                EarnRate: Points.Parse("1"), Currencies: [new NewCurrency("Stars"), new NewCurrency("Coins")]));
            await ProgramCatalog.CreateAsync(p, new NewProgram("Seven Entertainment", SevenSourceProgramId, Concept: "entertainment"));

            await StoreDirectory.CreateStoreAsync(p, new NewStore("default", "default", "supermarket"));
            await StoreDirectory.CreateTillAsync(p, new NewTill("default", "default"));
            await StoreDirectory.CreateStoreAsync(p, new NewStore("supermarketdemo", "supermarketdemo", "supermarket"));
            await StoreDirectory.CreateTillAsync(p, new NewTill("till.marketsuper", "supermarketdemo"));
            await StoreDirectory.CreateTillAsync(p, new NewTill("till.marketsuper.2", "supermarketdemo"));
            await StoreDirectory.CreateStoreAsync(p, new NewStore("demostorebukl", "demostorebukl Mobile", "entertainment"));
            await StoreDirectory.CreateTillAsync(p, new NewTill("demostorebukl.1", "demostorebukl"));

            // A voucher of the vault API: what program 626's points buy at the till.
            await VoucherCatalog.CreateAsync(p, DefaultProgramId, new NewVoucherDefinition("Free coffee", Points.FromWhole(40), FreeCoffeeVoucherId, Uses: 1));
        }, ct);

        // Customers: 2024-01-03 onwards.
        var customers = new (long Id, string First, string Last, string? External, string Email, string Mobile, string Card)[]
        {
            (NareshId, "naresh", "silla", null, "naresh.silla@example.com", "919900000001", "6001000064035151"),
            (KamalId, "Kamal", "H", "000000043488", "kamal.h@example.com", "919900000002", "6001000170940055"),
            (PlainCustomerId, "Priya", "Raman", "000000098662", "priya.raman@example.com", "919900000003", "6001000098662653"),
            (CurrencyCustomerId, "Chen", "Wei", "000000423725", "chen.wei@example.com", "919900000004", "6001000423725119"),
            (381335653, "Anita", "Fleet", "000000381335", "anita.fleet@example.com", "919900000005", "6001000381335653"),
            (381335654, "Ben", "Fleet", null, "ben.fleet@example.com", "919900000006", "6001000381335654"),
            (381335655, "Cara", "Fleet", null, "cara.fleet@example.com", "919900000007", "6001000381335655"),
        };
        var day = 3;
        foreach (var c in customers)
        {
            await PostAsync(db, orgId, At(1, day++, 10, 15), p => CustomerDirectory.RegisterAsync(p, new NewCustomer(
                c.Id, c.First, c.Last, c.External, c.Email, c.Mobile, "INSTORE", AccountNumbers: [c.Card],
                StoreCode: "default", TillCode: "default",
                Identifiers: [new CustomerIdentifier("MARTJACK", "email", c.Email)])), ct);
        }

        await PostAsync(db, orgId, At(1, 12, 11, 0), p => GroupDirectory.CreateAsync(p, new NewGroup("Fleet family", 381335653, GroupId,
            ExternalId: "fleet-381335652", MaxMembers: 6,
            Members: [new NewGroupMember(381335654, "SECONDARY"), new NewGroupMember(381335655, "SECONDARY", MayRedeem: false)])), ct);

        // Naresh: weekly bills at the supermarket (20 points, 100 Stars, 100 Stamps on 200.00),
        // bulk allocations, a named event, redemptions and a transfer, January to May.
        var bill = 1542280708600L;
        var rng = new Random(626);
        for (var week = 0; week < 15; week++)
        {
            var when = At(1, 15, 11, 53, 6).AddDays(week * 7).AddMinutes(rng.Next(0, 300));
            var number = (bill++).ToString(System.Globalization.CultureInfo.InvariantCulture);
            await PostAsync(db, orgId, when, p => PointsPostings.AddTransactionAsync(p, new NewBill(NareshId, number, 200.0m, "supermarketdemo",
                "till.marketsuper", 200.0m, when.AddSeconds(-1), DefaultProgramId, "INSTORE", SourceProgramId: CardProgramId)), ct);
            if (week % 4 == 3)
            {
                await PostAsync(db, orgId, when.AddSeconds(-1), p => PointsPostings.AllocateAsync(p, new NewBulkAllocation(
                    [new NewAllocation(NareshId, Points.FromWhole(2000)), new NewAllocation(PlainCustomerId, Points.FromWhole(500))],
                    DefaultProgramId, "Quarterly bonus")), ct);
            }
            if (week % 5 == 4)
            {
                await PostAsync(db, orgId, when.AddHours(3), p => PointsPostings.RedeemAsync(p, new NewRedemption(Points.FromWhole(150), NareshId,
                    ProgramId: DefaultProgramId, TransactionNumber: "R" + number, Notes: "Redeemed at checkout",
                    StoreCode: "supermarketdemo", TillCode: "till.marketsuper")), ct);
            }
        }

        // The spec's April bills, numbered as in its example.
        foreach (var (when, number) in new[]
        {
            (At(4, 18, 11, 53, 7), "1542280708642"), (At(4, 19, 7, 21, 32), "1542280708643"),
            (At(4, 19, 7, 36, 18), "1542280708644"), (At(4, 19, 7, 39, 12), "1542280708645"),
        })
        {
            await PostAsync(db, orgId, when.AddSeconds(-1), p => PointsPostings.AllocateAsync(p, new NewBulkAllocation(
                [new NewAllocation(NareshId, Points.FromWhole(2000))], DefaultProgramId)), ct);
            await PostAsync(db, orgId, when, p => PointsPostings.AddTransactionAsync(p, new NewBill(NareshId, number, 200.0m, "supermarketdemo",
                "till.marketsuper", 200.0m, when.AddSeconds(-1), DefaultProgramId, "INSTORE", SourceProgramId: CardProgramId)), ct);
        }

        await PostAsync(db, orgId, At(5, 4, 6, 35, 44), p => PointsPostings.PostGenericEventAsync(p, new NewGenericEvent(NareshId, "ThankYouSanta",
            [new Award(Points.FromWhole(100), "Tier-points")], DefaultProgramId, "default", "default", SourceProgramId: CardProgramId)), ct);
        await PostAsync(db, orgId, At(5, 4, 7, 16, 34), p => PointsPostings.PostGenericEventAsync(p, new NewGenericEvent(NareshId, "ThankYouSanta",
            [new Award(Points.FromWhole(100), "Tier-points")], DefaultProgramId, "default", "default", SourceProgramId: CardProgramId)), ct);
        // Priya buys a Free coffee voucher at the till in April and has not used it yet. Posted in date
        // order with her other movements, so her vault history's running balance reads straight.
        await PostAsync(db, orgId, At(4, 15, 10, 30), p => VaultTransactions.PostAsync(p, "6001000098662653", new VaultTransactionRequest(
            [new VaultProgramLines(DefaultProgramId, VoucherPurchases: [new VaultVoucherPurchase(FreeCoffeeVoucherId)])],
            new VaultContext("R-0415", "supermarketdemo", "till.marketsuper", "op-1", "Free coffee")), () => PriyasVoucherSerial), ct);
        await PostAsync(db, orgId, At(5, 6, 9, 0), p => PointsPostings.TransferAsync(p, new NewTransfer(
            new TransferParty(NareshId), new TransferParty(PlainCustomerId), Points.FromWhole(250), DefaultProgramId, Reason: "Gift to a friend")), ct);

        // Kamal: entertainment program (469) with Stars and Coins, triggered by Seven Entertainment.
        for (var i = 0; i < 6; i++)
        {
            var when = At(2, 1, 14, 34, 52).AddDays(i * 12);
            var number = $"SE-{1000 + i}";
            await PostAsync(db, orgId, when, p => PointsPostings.AddTransactionAsync(p, new NewBill(KamalId, number, 35.5m + i, "demostorebukl",
                "demostorebukl.1", ProgramId: SevenProgramId, SourceProgramId: SevenSourceProgramId,
                Awards: [new Award(Points.FromWhole(5), "Stars"), new Award(Points.FromWhole(1), "Coins")])), ct);
        }
        await PostAsync(db, orgId, At(4, 25, 14, 34, 52), p => PointsPostings.RedeemAsync(p, new NewRedemption(Points.FromWhole(3), KamalId,
            ProgramId: SevenProgramId, Currency: "Stars", StoreCode: "demostorebukl", TillCode: "demostorebukl.1")), ct);

        // The alternate-currency customer: Stars and Stamps from bills, Boost and Pebbles from events.
        for (var i = 0; i < 8; i++)
        {
            var when = At(2, 5, 12, 0).AddDays(i * 9);
            var number = $"AC-{2000 + i}";
            await PostAsync(db, orgId, when, p => PointsPostings.AddTransactionAsync(p, new NewBill(CurrencyCustomerId, number, 80m + (i * 10), "supermarketdemo",
                "till.marketsuper.2", ProgramId: DefaultProgramId)), ct);
            await PostAsync(db, orgId, when.AddMinutes(5), p => PointsPostings.PostGenericEventAsync(p, new NewGenericEvent(CurrencyCustomerId, "AppCheckIn",
                [new Award(Points.FromWhole(10), i % 2 == 0 ? "Boost" : "Pebbles")], DefaultProgramId)), ct);
        }
        await PostAsync(db, orgId, At(4, 2, 16, 0), p => PointsPostings.RedeemAsync(p, new NewRedemption(Points.FromWhole(50), CurrencyCustomerId,
            ProgramId: DefaultProgramId, Currency: "Stars", Notes: "Stars for a coffee")), ct);

        // The group: its members' bills pool into the group wallet; the primary member redeems from it.
        var members = new long[] { 381335653, 381335654, 381335655 };
        for (var i = 0; i < 12; i++)
        {
            var when = At(1, 20, 17, 30).AddDays(i * 8);
            var member = members[i % members.Length];
            var number = $"GF-{3000 + i}";
            await PostAsync(db, orgId, when, p => PointsPostings.AddTransactionAsync(p, new NewBill(member, number, 120m + (i * 15), "supermarketdemo",
                "till.marketsuper", ProgramId: DefaultProgramId, SourceProgramId: CardProgramId)), ct);
        }
        await PostAsync(db, orgId, At(4, 28, 10, 0), p => PointsPostings.RedeemAsync(p, new NewRedemption(Points.FromWhole(20), 381335653, GroupId,
            DefaultProgramId, Notes: "Family treat")), ct);
        await PostAsync(db, orgId, At(4, 29, 10, 0), p => PointsPostings.TransferAsync(p, new NewTransfer(
            new TransferParty(GroupId: GroupId), new TransferParty(381335654), Points.FromWhole(5), DefaultProgramId, Reason: "Pocket money")), ct);

        // The spec's own alternate currency: launched in the default program in March (so no bill
        // earns it and no registration opened it), earned by the alternate-currency customer in app
        // challenges and partly spent. Posted last, so the ids of everything above stay as they were.
        await PostAsync(db, orgId, At(3, 1, 9, 0), p => ProgramCatalog.AddCurrencyAsync(p, DefaultProgramId, new NewCurrency(SpecCurrencyName)), ct);
        for (var i = 0; i < 3; i++)
        {
            await PostAsync(db, orgId, At(3, 4, 18, 30).AddDays(i * 14), p => PointsPostings.PostGenericEventAsync(p, new NewGenericEvent(CurrencyCustomerId,
                "AppChallenge", [new Award(Points.FromWhole(25), SpecCurrencyName)], DefaultProgramId)), ct);
        }
        await PostAsync(db, orgId, At(4, 12, 12, 0), p => PointsPostings.RedeemAsync(p, new NewRedemption(Points.FromWhole(30), CurrencyCustomerId,
            ProgramId: DefaultProgramId, Currency: SpecCurrencyName, Notes: "Challenge reward")), ct);
    }
}
