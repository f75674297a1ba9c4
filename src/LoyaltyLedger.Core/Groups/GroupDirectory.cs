using System.Data.Common;
using Dapper;
using LoyaltyLedger.Customers;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Groups;

/// <summary>
/// A user group (a family, a fleet): a primary member, members with roles, and a pooled wallet.
/// When the group pools points, what its members earn is credited to the group's wallet.
/// </summary>
public sealed class UserGroup
{
    public long GroupId { get; set; }
    public string? ExternalId { get; set; }
    public string Name { get; set; } = "";
    public long PrimaryCustomerId { get; set; }
    public int MaxMembers { get; set; }
    public bool PoolsPoints { get; set; }
    public IReadOnlyList<GroupMember> Members { get; set; } = [];
}

public sealed class GroupMember
{
    public long CustomerId { get; set; }
    public string Role { get; set; } = "";
    public bool MayRedeem { get; set; }
    public bool MayTransfer { get; set; }
    public DateTimeOffset JoinedAt { get; set; }
}

public sealed record NewGroup(
    string Name,
    long PrimaryCustomerId,
    long? GroupId = null,
    string? ExternalId = null,
    int? MaxMembers = null,
    bool PoolsPoints = true,
    IReadOnlyList<NewGroupMember>? Members = null);

public sealed record NewGroupMember(long CustomerId, string? Role = null, bool MayRedeem = true, bool MayTransfer = true);

public static class GroupDirectory
{
    public const string PrimaryRole = "PRIMARY";
    public const string SecondaryRole = "SECONDARY";
    public const int DefaultMaxMembers = 10;

    private sealed class GroupRow
    {
        public long GroupId { get; set; }
        public string? ExternalId { get; set; }
        public string Name { get; set; } = "";
        public long PrimaryCustomerId { get; set; }
        public long MaxMembers { get; set; }
        public long PoolsPoints { get; set; }
    }

    private sealed class MemberRow
    {
        public long CustomerId { get; set; }
        public string Role { get; set; } = "";
        public long MayRedeem { get; set; }
        public long MayTransfer { get; set; }
        public long JoinedAt { get; set; }
    }

    public static async Task<UserGroup?> GetAsync(DbConnection c, SqlDialect dialect, long orgId, long groupId, DbTransaction? tx, CancellationToken ct)
    {
        var row = await KeptReads.QuerySingleOrDefaultAsync<GroupRow>(c, dialect,
            "SELECT group_id, external_id, name, primary_customer_id, max_members, pools_points FROM user_groups WHERE org_id = @orgId AND group_id = @groupId",
            new { orgId, groupId }, tx, ct);
        if (row is null) return null;
        var members = await KeptReads.QueryAsync<MemberRow>(c, dialect,
            "SELECT customer_id, role, may_redeem, may_transfer, joined_at FROM group_members WHERE org_id = @orgId AND group_id = @groupId ORDER BY joined_at, customer_id",
            new { orgId, groupId }, tx, ct);
        return new UserGroup
        {
            GroupId = row.GroupId, ExternalId = row.ExternalId, Name = row.Name, PrimaryCustomerId = row.PrimaryCustomerId,
            MaxMembers = (int)row.MaxMembers, PoolsPoints = row.PoolsPoints != 0,
            Members = members.Select(m => new GroupMember
            {
                CustomerId = m.CustomerId, Role = m.Role, MayRedeem = m.MayRedeem != 0, MayTransfer = m.MayTransfer != 0, JoinedAt = DateTimeOffset.FromUnixTimeMilliseconds(m.JoinedAt),
            }).ToList(),
        };
    }

    public static async Task<UserGroup> RequireAsync(DbConnection c, SqlDialect dialect, long orgId, long groupId, DbTransaction? tx, CancellationToken ct) =>
        await GetAsync(c, dialect, orgId, groupId, tx, ct) ?? throw LedgerException.NotFound("group", groupId);

    /// <summary>The group a posting names, as its transaction sees it; refused when there is none.</summary>
    public static Task<UserGroup> RequireAsync(Posting posting, long groupId) =>
        posting.WithConnectionAsync((conn, tx) => RequireAsync(conn, posting.Dialect, posting.OrgId, groupId, tx, posting.Cancellation));

    /// <summary>Finds a group by groupId (also spelled id), externalId or primaryUserId.</summary>
    public static async Task<UserGroup?> FindAsync(DbConnection c, SqlDialect dialect, long orgId, string identifierName, string value, DbTransaction? tx,
        CancellationToken ct)
    {
        long? groupId = identifierName.ToUpperInvariant() switch
        {
            "GROUPID" or "ID" => long.TryParse(value, out var id) ? id : null,
            "EXTERNALID" => await KeptReads.ScalarAsync<long?>(c, dialect,
                "SELECT group_id FROM user_groups WHERE org_id = @orgId AND external_id = @value", new { orgId, value }, tx, ct),
            "PRIMARYUSERID" => long.TryParse(value, out var primary)
                ? await KeptReads.ScalarAsync<long?>(c, dialect,
                    "SELECT group_id FROM user_groups WHERE org_id = @orgId AND primary_customer_id = @primary ORDER BY group_id LIMIT 1", new { orgId, primary }, tx, ct)
                : null,
            _ => null,
        };
        return groupId is { } g ? await GetAsync(c, dialect, orgId, g, tx, ct) : null;
    }

    /// <summary>
    /// The group whose pooled wallet a customer's earnings go to, if any. With
    /// <paramref name="requireCustomer"/> it also refuses an unknown customer, in the same statement:
    /// the customer's row with its pooling membership joined, no row for a customer who does not exist.
    /// </summary>
    public static async Task<(long GroupId, GroupMember Member)?> PoolOfAsync(Posting posting, long customerId, bool requireCustomer = false)
    {
        var batch = posting.Batch();
        var pool = batch.Query(
            requireCustomer
                ? """
                  SELECT m.group_id, m.role, m.may_redeem, m.may_transfer
                  FROM customers c
                  LEFT JOIN (group_members m JOIN user_groups g ON g.org_id = m.org_id AND g.group_id = m.group_id AND g.pools_points = 1)
                      ON m.org_id = c.org_id AND m.customer_id = c.customer_id
                  WHERE c.org_id = @org AND c.customer_id = @customerId
                  """
                : """
                  SELECT m.group_id, m.role, m.may_redeem, m.may_transfer
                  FROM group_members m JOIN user_groups g ON g.org_id = m.org_id AND g.group_id = m.group_id
                  WHERE m.org_id = @org AND m.customer_id = @customerId AND g.pools_points = 1
                  """,
            new { org = posting.OrgId, customerId });
        var results = await batch.RunAsync();
        if (requireCustomer) CustomerDirectory.Require(results, pool, customerId);
        var row = results.Rows(pool).SingleOrDefault();
        if (row?[0] is null) return null;
        var groupId = Convert.ToInt64(row[0], System.Globalization.CultureInfo.InvariantCulture);
        return (groupId, new GroupMember
        {
            CustomerId = customerId,
            Role = (string)row[1]!,
            MayRedeem = Convert.ToInt64(row[2], System.Globalization.CultureInfo.InvariantCulture) != 0,
            MayTransfer = Convert.ToInt64(row[3], System.Globalization.CultureInfo.InvariantCulture) != 0,
        });
    }

    public static async Task<UserGroup> CreateAsync(Posting posting, NewGroup request)
    {
        if (string.IsNullOrWhiteSpace(request.Name)) throw LedgerException.Invalid("A group needs a name.");
        var maxMembers = request.MaxMembers ?? DefaultMaxMembers;
        if (maxMembers is < 1 or > 1000) throw LedgerException.Invalid("maxMembers is between 1 and 1000.");
        await CustomerDirectory.RequireAsync(posting, request.PrimaryCustomerId);

        long groupId;
        if (request.GroupId is { } explicitId)
        {
            if (explicitId <= 0) throw LedgerException.Invalid("groupId must be positive.");
            if (await posting.WithConnectionAsync((conn, tx) => GetAsync(conn, posting.Dialect, posting.OrgId, explicitId, tx, posting.Cancellation)) is not null)
                throw new LedgerException(ErrorCodes.AlreadyExists, $"Group {explicitId} already exists.", 409);
            groupId = explicitId;
            await posting.ClaimIdAsync("group", groupId);
        }
        else
        {
            groupId = await posting.NextIdAsync("group");
        }

        try
        {
            await posting.ExecuteAsync(
                """
                INSERT INTO user_groups (org_id, group_id, external_id, name, primary_customer_id, max_members, pools_points, created_at)
                VALUES (@org, @groupId, @externalId, @name, @primary, @maxMembers, @pools, @now)
                """,
                new
                {
                    org = posting.OrgId, groupId, externalId = request.ExternalId, name = request.Name, primary = request.PrimaryCustomerId,
                    maxMembers, pools = request.PoolsPoints ? 1 : 0, now = posting.NowMs,
                });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"A group with external id '{request.ExternalId}' already exists.", 409);
        }

        await AddMemberAsync(posting, groupId, new NewGroupMember(request.PrimaryCustomerId, PrimaryRole));
        foreach (var member in request.Members ?? [])
        {
            if (member.CustomerId == request.PrimaryCustomerId) continue;
            await AddMemberAsync(posting, groupId, member);
        }
        return (await posting.WithConnectionAsync((conn, tx) => GetAsync(conn, posting.Dialect, posting.OrgId, groupId, tx, posting.Cancellation)))!;
    }

    public static async Task<GroupMember> AddMemberAsync(Posting posting, long groupId, NewGroupMember request)
    {
        var group = await RequireAsync(posting, groupId);
        await CustomerDirectory.RequireAsync(posting, request.CustomerId);
        if (group.Members.Count >= group.MaxMembers)
            throw new LedgerException("group_full", $"Group {groupId} already has its maximum of {group.MaxMembers} members.", 409);
        var role = string.IsNullOrWhiteSpace(request.Role) ? SecondaryRole : request.Role.Trim().ToUpperInvariant();
        if (role.Length > 50) throw LedgerException.Invalid("A role is at most 50 characters.");
        try
        {
            await posting.ExecuteAsync(
                """
                INSERT INTO group_members (org_id, group_id, customer_id, role, may_redeem, may_transfer, joined_at)
                VALUES (@org, @groupId, @customerId, @role, @mayRedeem, @mayTransfer, @now)
                """,
                new
                {
                    org = posting.OrgId, groupId, customerId = request.CustomerId, role,
                    mayRedeem = request.MayRedeem ? 1 : 0, mayTransfer = request.MayTransfer ? 1 : 0, now = posting.NowMs,
                });
        }
        catch (DbException ex) when (posting.Dialect.IsUniqueViolation(ex))
        {
            throw new LedgerException(ErrorCodes.AlreadyExists, $"Customer {request.CustomerId} already belongs to a group.", 409);
        }
        return new GroupMember { CustomerId = request.CustomerId, Role = role, MayRedeem = request.MayRedeem, MayTransfer = request.MayTransfer, JoinedAt = DateTimeOffset.FromUnixTimeMilliseconds(posting.NowMs) };
    }
}
