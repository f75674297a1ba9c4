using System.Net.Http.Headers;
using System.Security.Claims;
using System.Text;
using System.Text.Encodings.Web;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Api;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>
/// HTTP Basic with an API key as the user name and its secret as the password, as both platforms'
/// clients send it. The key decides the organization: every query of the request is scoped to it.
/// </summary>
public sealed class BasicAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    LedgerDatabase database)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "Basic";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (!Request.Headers.TryGetValue("Authorization", out var header)) return AuthenticateResult.NoResult();
        if (!TryReadCredentials(header.ToString(), out var keyId, out var secret))
            return AuthenticateResult.Fail("Not HTTP Basic credentials of the form key:secret.");

        var caller = await Tenants.AuthenticateAsync(database, keyId, secret, Context.RequestAborted);
        if (caller is null) return AuthenticateResult.Fail("Unknown key or wrong secret.");

        var identity = new ClaimsIdentity(
        [
            new Claim(CallerClaims.OrgId, caller.OrgId.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new Claim(CallerClaims.KeyId, caller.KeyId),
            new Claim(ClaimTypes.Role, caller.Role.ToString()),
        ], SchemeName);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }

    /// <summary>The key id and secret of an <c>Authorization: Basic</c> header.</summary>
    public static bool TryReadCredentials(string? header, out string keyId, out string secret)
    {
        keyId = secret = "";
        if (!AuthenticationHeaderValue.TryParse(header, out var value)
            || !string.Equals(value.Scheme, "Basic", StringComparison.OrdinalIgnoreCase) || value.Parameter is null)
            return false;
        string decoded;
        try { decoded = Encoding.UTF8.GetString(Convert.FromBase64String(value.Parameter)); }
        catch (FormatException) { return false; }
        var colon = decoded.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0) return false;
        (keyId, secret) = (decoded[..colon], decoded[(colon + 1)..]);
        return true;
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Basic realm=\"LoyaltyLedger\", charset=\"UTF-8\"";
        await ErrorResponses.WriteAsync(Context, ErrorResponses.Problem(401, ErrorCodes.Unauthorized,
            "Missing or wrong credentials: send HTTP Basic with an API key and its secret."));
    }

    protected override async Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        await ErrorResponses.WriteAsync(Context, ErrorResponses.Problem(403, ErrorCodes.Forbidden,
            "This key's role does not allow this call."));
    }
}

public static class CallerClaims
{
    public const string OrgId = "ledger:org";
    public const string KeyId = "ledger:key";

    /// <summary>Policies by role: admin includes write, write includes read.</summary>
    public const string Read = "read";
    public const string Write = "write";
    public const string Admin = "admin";

    public static Caller Caller(this ClaimsPrincipal user) => new(
        long.Parse(user.FindFirstValue(OrgId)!, System.Globalization.CultureInfo.InvariantCulture),
        user.FindFirstValue(KeyId)!,
        Enum.Parse<KeyRole>(user.FindFirstValue(ClaimTypes.Role)!));

    public static void AddLedgerPolicies(this Microsoft.AspNetCore.Authorization.AuthorizationOptions options)
    {
        options.AddPolicy(Read, p => p.RequireAuthenticatedUser());
        options.AddPolicy(Write, p => p.RequireRole(nameof(KeyRole.Write), nameof(KeyRole.Admin)));
        options.AddPolicy(Admin, p => p.RequireRole(nameof(KeyRole.Admin)));
    }
}
