using LoyaltyLedger.Groups;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>User groups: members with roles and a pooled wallet.</summary>
public static class GroupsApi
{
    public static RouteGroupBuilder MapGroupsApi(this RouteGroupBuilder v1)
    {
        var groups = v1.MapGroup("/groups").WithTags("Groups");
        groups.MapPost("/", CreateAsync).Refuses(StatusCodes.Status404NotFound).WithName("CreateGroup").WithSummary("Creates a user group with its primary member.")
            .RequireAuthorization(CallerClaims.Write);
        groups.MapGet("/{groupId:long}", GetAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetGroup").WithSummary("One group with its members.");
        groups.MapPost("/{groupId:long}/members", AddMemberAsync).Refuses(StatusCodes.Status404NotFound).WithName("AddGroupMember").WithSummary("Adds a member with a role.")
            .RequireAuthorization(CallerClaims.Write);
        groups.MapGet("/{groupId:long}/balances", BalancesAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetGroupBalances").WithSummary("The pooled wallet's balances.");
        return v1;
    }

    private static Task<CreatedAnswer<UserGroup>> CreateAsync(NewGroup request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => GroupDirectory.CreateAsync(posting, request));

    private static async Task<Ok<UserGroup>> GetAsync(long groupId, HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => GroupDirectory.RequireAsync(c, db.Dialect, http.User.Caller().OrgId, groupId, null, http.RequestAborted), http.RequestAborted));

    private static Task<CreatedAnswer<GroupMember>> AddMemberAsync(long groupId, NewGroupMember request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => GroupDirectory.AddMemberAsync(posting, groupId, request));

    private static async Task<Ok<IReadOnlyList<BalanceView>>> BalancesAsync(long groupId, HttpContext http, LedgerDatabase db)
    {
        var orgId = http.User.Caller().OrgId;
        return TypedResults.Ok(await db.ReadAsync(async c =>
        {
            await GroupDirectory.RequireAsync(c, db.Dialect, orgId, groupId, null, http.RequestAborted);
            return await Balances.ForOwnerAsync(c, db.Dialect, orgId, OwnerType.Group, groupId, http.RequestAborted);
        }, http.RequestAborted));
    }
}
