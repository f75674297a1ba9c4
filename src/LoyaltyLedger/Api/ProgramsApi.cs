using LoyaltyLedger.Programs;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyLedger.Server.Api;

/// <summary>Programs (loyalty point definitions) and their alternate currencies.</summary>
public static class ProgramsApi
{
    public static RouteGroupBuilder MapProgramsApi(this RouteGroupBuilder v1)
    {
        var programs = v1.MapGroup("/programs").WithTags("Programs");
        programs.MapGet("/", ListAsync).WithName("ListPrograms").WithSummary("The organization's programs with their currencies.");
        programs.MapGet("/{programId:long}", GetAsync).Refuses(StatusCodes.Status404NotFound).WithName("GetProgram").WithSummary("One program.");
        programs.MapPost("/", CreateAsync).WithName("CreateProgram").WithSummary("Creates a program (admin key).")
            .RequireAuthorization(CallerClaims.Admin);
        programs.MapPost("/{programId:long}/currencies", AddCurrencyAsync).Refuses(StatusCodes.Status404NotFound).WithName("AddCurrency")
            .WithSummary("Adds an alternate currency to a program (admin key).").RequireAuthorization(CallerClaims.Admin);
        return v1;
    }

    private static async Task<Ok<IReadOnlyList<LoyaltyProgram>>> ListAsync(HttpContext http, LedgerDatabase db) =>
        TypedResults.Ok(await db.ReadAsync(c => ProgramCatalog.ListAsync(c, db.Dialect, http.User.Caller().OrgId, null, http.RequestAborted), http.RequestAborted));

    private static async Task<Ok<LoyaltyProgram>> GetAsync(long programId, HttpContext http, LedgerDatabase db)
    {
        var program = await db.ReadAsync(c => ProgramCatalog.FindAsync(c, db.Dialect, http.User.Caller().OrgId, programId, null, null, http.RequestAborted), http.RequestAborted);
        return program is null ? throw LedgerException.NotFound("program", programId) : TypedResults.Ok(program);
    }

    private static Task<CreatedAnswer<LoyaltyProgram>> CreateAsync(NewProgram request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => ProgramCatalog.CreateAsync(posting, request));

    private static Task<CreatedAnswer<AlternateCurrency>> AddCurrencyAsync(long programId, NewCurrency request, HttpContext http, IdempotentWriter writer) =>
        writer.PostCreatedAsync(http, request, posting => ProgramCatalog.AddCurrencyAsync(posting, programId, request));
}
