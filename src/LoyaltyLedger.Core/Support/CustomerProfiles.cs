using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Lifecycle;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Programs;
using LoyaltyLedger.Storage;
using LoyaltyLedger.Tiers;

namespace LoyaltyLedger.Support;

public sealed record AccountView(string AccountNumber, string Status, DateTimeOffset IssuedAt);

/// <summary>The group a customer belongs to, and what the member may do with its pooled points.</summary>
public sealed record MembershipView(long GroupId, string GroupName, string Role, bool MayRedeem, bool MayTransfer, bool PoolsPoints, DateTimeOffset JoinedAt);

/// <summary>A wallet the console can chart: its id and what it holds.</summary>
public sealed record WalletView(long WalletId, long ProgramId, string ProgramName, long CurrencyId, string? Currency, string Category);

/// <summary>Everything the customer page shows above the ledger, read on one connection.</summary>
public sealed record CustomerProfile(
    Customer Customer,
    IReadOnlyList<CustomerIdentifier> Identifiers,
    IReadOnlyList<AccountView> Accounts,
    MembershipView? Group,
    IReadOnlyList<BalanceView> Balances,
    IReadOnlyList<WalletView> Wallets,
    IReadOnlyList<ExpiryScheduleItem> Expiries,
    IReadOnlyList<HeldScheduleItem> Held,
    long Events,
    IReadOnlyList<LoyaltyProgram> Programs,
    IReadOnlyList<OwnerTier> Tiers);

/// <summary>A user group as its page shows it: members with their names, pooled balances.</summary>
public sealed record GroupProfile(
    UserGroup Group,
    IReadOnlyDictionary<long, string> MemberNames,
    IReadOnlyList<BalanceView> Balances,
    IReadOnlyList<WalletView> Wallets,
    IReadOnlyList<ExpiryScheduleItem> Expiries,
    IReadOnlyList<HeldScheduleItem> Held,
    long Events,
    IReadOnlyList<LoyaltyProgram> Programs,
    IReadOnlyList<OwnerTier> Tiers);

/// <summary>The name of a customer or a group, and its standing in each program that has tiers: what the tier override page shows.</summary>
public sealed record TierOwner(string Name, IReadOnlyList<OwnerTier> Tiers);

/// <summary>
/// The support console's reads of a customer or a group, built from the directories, balances and
/// schedules the APIs use. Each is a handful of indexed reads of the owner's rows: nothing here
/// grows with the length of the owner's history except the upcoming expiries, which are bounded by
/// <see cref="ExpiryHorizon"/>.
/// </summary>
public static class CustomerProfiles
{
    /// <summary>How far ahead the console lists upcoming expiries.</summary>
    public static readonly TimeSpan ExpiryHorizon = TimeSpan.FromDays(366);

    private sealed class AccountRow
    {
        public string AccountNumber { get; set; } = "";
        public string Status { get; set; } = "";
        public long CreatedAt { get; set; }
    }

    private sealed class MembershipRow
    {
        public long GroupId { get; set; }
        public string Name { get; set; } = "";
        public string Role { get; set; } = "";
        public long MayRedeem { get; set; }
        public long MayTransfer { get; set; }
        public long PoolsPoints { get; set; }
        public long JoinedAt { get; set; }
    }

    private sealed class WalletRow
    {
        public long WalletId { get; set; }
        public long ProgramId { get; set; }
        public long CurrencyId { get; set; }
        public string Category { get; set; } = "";
    }

    /// <summary>The customer's profile, or null when the organization has no such customer.</summary>
    public static Task<CustomerProfile?> CustomerAsync(LedgerDatabase db, long orgId, long customerId, DateTimeOffset now, CancellationToken ct) =>
        db.ReadAsync(async c =>
        {
            var customer = await CustomerDirectory.GetAsync(c, db.Dialect, orgId, customerId, null, ct);
            if (customer is null) return null;
            var identifiers = await CustomerDirectory.IdentifiersAsync(c, db.Dialect, orgId, customerId, null, ct);
            // Sorted here: an ORDER BY account_number leads SQLite to walk the organization's accounts by their key.
            var accounts = (await c.QueryAsync<AccountRow>(
                new CommandDefinition("SELECT account_number, status, created_at FROM loyalty_accounts WHERE org_id = @orgId AND customer_id = @customerId",
                new { orgId, customerId }, cancellationToken: ct))).OrderBy(a => a.AccountNumber, StringComparer.Ordinal).Select(a => new AccountView(a.AccountNumber, a.Status, DateTimeOffset.FromUnixTimeMilliseconds(a.CreatedAt))).ToList();
            var membership = await c.QuerySingleOrDefaultAsync<MembershipRow>(
                new CommandDefinition("""
                SELECT m.group_id, g.name, m.role, m.may_redeem, m.may_transfer, g.pools_points, m.joined_at
                FROM group_members m JOIN user_groups g ON g.org_id = m.org_id AND g.group_id = m.group_id
                WHERE m.org_id = @orgId AND m.customer_id = @customerId
                """, new { orgId, customerId }, cancellationToken: ct));
            var programs = await ProgramCatalog.ListAsync(c, db.Dialect, orgId, null, db.Catalog, ct);
            return new CustomerProfile(
                customer, identifiers, accounts,
                membership is null ? null : new MembershipView(membership.GroupId, membership.Name, membership.Role, membership.MayRedeem != 0,
                    membership.MayTransfer != 0, membership.PoolsPoints != 0, DateTimeOffset.FromUnixTimeMilliseconds(membership.JoinedAt)),
                await Balances.ForOwnerAsync(c, db.Dialect, orgId, OwnerType.Customer, customerId, ct),
                await WalletsAsync(c, orgId, OwnerType.Customer, customerId, programs, ct),
                await Schedules.ExpiryScheduleAsync(c, db.Dialect, orgId, OwnerType.Customer, customerId, null, earliestOnly: false, ct, until: now + ExpiryHorizon),
                await Schedules.HeldScheduleAsync(c, db.Dialect, orgId, OwnerType.Customer, customerId, ct),
                await EventCountAsync(c, orgId, OwnerType.Customer, customerId, ct),
                programs,
                await TierReads.ForOwnerAsync(c, orgId, OwnerType.Customer, customerId, programs, now, ct));
        }, ct);

    /// <summary>The group's profile, or null when the organization has no such group.</summary>
    public static Task<GroupProfile?> GroupAsync(LedgerDatabase db, long orgId, long groupId, DateTimeOffset now, CancellationToken ct) =>
        db.ReadAsync(async c =>
        {
            var group = await GroupDirectory.GetAsync(c, db.Dialect, orgId, groupId, null, ct);
            if (group is null) return null;
            var names = new Dictionary<long, string>();
            foreach (var member in group.Members)
            {
                if (await CustomerDirectory.GetAsync(c, db.Dialect, orgId, member.CustomerId, null, ct) is { } customer)
                    names[member.CustomerId] = CustomerSearch.DisplayName(customer);
            }
            var programs = await ProgramCatalog.ListAsync(c, db.Dialect, orgId, null, db.Catalog, ct);
            return new GroupProfile(group, names,
                await Balances.ForOwnerAsync(c, db.Dialect, orgId, OwnerType.Group, groupId, ct),
                await WalletsAsync(c, orgId, OwnerType.Group, groupId, programs, ct),
                await Schedules.ExpiryScheduleAsync(c, db.Dialect, orgId, OwnerType.Group, groupId, null, earliestOnly: false, ct, until: now + ExpiryHorizon),
                await Schedules.HeldScheduleAsync(c, db.Dialect, orgId, OwnerType.Group, groupId, ct),
                await EventCountAsync(c, orgId, OwnerType.Group, groupId, ct),
                programs,
                await TierReads.ForOwnerAsync(c, orgId, OwnerType.Group, groupId, programs, now, ct));
        }, ct);

    /// <summary>A customer's or group's name and tiers, or null when the organization has no such owner.</summary>
    public static Task<TierOwner?> TierOwnerAsync(LedgerDatabase db, long orgId, OwnerType ownerType, long ownerId, DateTimeOffset now, CancellationToken ct) =>
        db.ReadAsync(async c =>
        {
            string? name = ownerType == OwnerType.Customer
                ? await CustomerDirectory.GetAsync(c, db.Dialect, orgId, ownerId, null, ct) is { } customer ? CustomerSearch.DisplayName(customer) : null
                : (await GroupDirectory.GetAsync(c, db.Dialect, orgId, ownerId, null, ct))?.Name;
            if (name is null) return null;
            var programs = await ProgramCatalog.ListAsync(c, db.Dialect, orgId, null, db.Catalog, ct);
            return new TierOwner(name, await TierReads.ForOwnerAsync(c, orgId, ownerType, ownerId, programs, now, ct));
        }, ct);

    private static async Task<IReadOnlyList<WalletView>> WalletsAsync(System.Data.Common.DbConnection c, long orgId, OwnerType ownerType, long ownerId,
        IReadOnlyList<LoyaltyProgram> programs, CancellationToken ct)
    {
        var rows = await c.QueryAsync<WalletRow>(
            new CommandDefinition("""
            SELECT wallet_id, program_id, currency_id, category FROM wallets
            WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId
            ORDER BY program_id, currency_id, category
            """, new { orgId, ownerType = ownerType.ToWire(), ownerId }, cancellationToken: ct));
        var byId = programs.ToDictionary(p => p.ProgramId);
        return rows.Select(w => new WalletView(w.WalletId, w.ProgramId, byId.TryGetValue(w.ProgramId, out var p) ? p.Name : "",
            w.CurrencyId, byId.TryGetValue(w.ProgramId, out var q) ? LotExpiry.CurrencyName(q, w.CurrencyId) : null, w.Category)).ToList();
    }

    /// <summary>The owner's number of events, from the running count Posting keeps (no count of the history).</summary>
    private static async Task<long> EventCountAsync(System.Data.Common.DbConnection c, long orgId, OwnerType ownerType, long ownerId, CancellationToken ct) =>
        await c.ExecuteScalarAsync<long?>(
            new CommandDefinition("SELECT events FROM owner_event_counts WHERE org_id = @orgId AND owner_type = @ownerType AND owner_id = @ownerId",
            new { orgId, ownerType = ownerType.ToWire(), ownerId }, cancellationToken: ct)) ?? 0;
}
