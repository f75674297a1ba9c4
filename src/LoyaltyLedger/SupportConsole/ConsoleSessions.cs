using System.Globalization;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using LoyaltyLedger.Organizations;
using LoyaltyLedger.Server.Hosting;
using LoyaltyLedger.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>
/// The console's sessions: an agent signs in with an API key id and secret, and gets an encrypted
/// session cookie (HttpOnly, SameSite=Strict, Secure under https, 8 hours sliding) that carries the
/// key's organization and role, never its secret. Every request checks the key again through the
/// same cache API authentication uses, so a session ends when its key is revoked or rotated, at the
/// latest <see cref="CatalogCache.KeysTtl"/> later.
/// </summary>
public static class ConsoleSessions
{
    public const string Scheme = "Console";
    public const string CookieName = "ledger_console";
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(8);

    /// <summary>A claim that changes when the key's secret does (a hash of its stored hash): a rotated key's sessions end.</summary>
    public const string SecretStamp = "ledger:stamp";
    public const string OrgName = "ledger:org-name";

    public static AuthenticationBuilder AddConsoleSessions(this AuthenticationBuilder authentication)
    {
        // Sessions live in the database; the cookie holds only the session's id (see ConsoleTicketStore).
        authentication.Services.AddOptions<CookieAuthenticationOptions>(Scheme)
            .Configure<LedgerDatabase, TimeProvider>((options, db, clock) => options.SessionStore = new ConsoleTicketStore(db, clock));
        return authentication.AddCookie(Scheme, options =>
        {
            options.Cookie.Name = CookieName;
            options.Cookie.Path = ConsolePaths.Root;
            options.Cookie.HttpOnly = true;
            options.Cookie.SameSite = SameSiteMode.Strict;
            options.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            options.ExpireTimeSpan = Lifetime;
            options.SlidingExpiration = true;
            options.LoginPath = ConsolePaths.SignIn;
            options.LogoutPath = ConsolePaths.SignOut;
            options.ReturnUrlParameter = "returnUrl";
            options.Events = new CookieAuthenticationEvents
            {
                OnValidatePrincipal = ValidateAsync,
                // A page the key's role does not allow: the console's own 403 page, not a redirect.
                OnRedirectToAccessDenied = context =>
                {
                    context.Response.StatusCode = StatusCodes.Status403Forbidden;
                    return Task.CompletedTask;
                },
            };
        });
    }

    /// <summary>Checks a key and secret and starts a session for it; false when they are wrong.</summary>
    public static async Task<bool> SignInAsync(HttpContext http, LedgerDatabase db, string keyId, string secret)
    {
        var ct = http.RequestAborted;
        var caller = await Tenants.AuthenticateAsync(db, keyId, secret, ct);
        if (caller is null) return false;
        var state = await Tenants.KeyStateAsync(db, keyId, ct);
        var organization = await Tenants.GetOrganizationAsync(db, caller.OrgId, ct);
        var orgId = caller.OrgId.ToString(CultureInfo.InvariantCulture);
        var identity = new ClaimsIdentity(
        [
            new Claim(ClaimTypes.NameIdentifier, orgId + ":" + caller.KeyId),
            new Claim(ClaimTypes.Name, caller.KeyId),
            new Claim(CallerClaims.OrgId, orgId),
            new Claim(CallerClaims.KeyId, caller.KeyId),
            new Claim(ClaimTypes.Role, caller.Role.ToString()),
            new Claim(SecretStamp, Stamp(state.SecretHash!)),
            new Claim(OrgName, organization?.Name ?? ""),
        ], Scheme, ClaimTypes.Name, ClaimTypes.Role);
        await http.SignInAsync(Scheme, new ClaimsPrincipal(identity), new AuthenticationProperties { IsPersistent = false });
        return true;
    }

    private static async Task ValidateAsync(CookieValidatePrincipalContext context)
    {
        var user = context.Principal;
        var keyId = user?.FindFirstValue(CallerClaims.KeyId);
        var db = context.HttpContext.RequestServices.GetRequiredService<LedgerDatabase>();
        var state = keyId is null ? null : await Tenants.KeyStateAsync(db, keyId, context.HttpContext.RequestAborted);
        var valid = user is not null && state is { SecretHash: { } hash }
            && Stamp(hash) == user.FindFirstValue(SecretStamp)
            && state.OrgId.ToString(CultureInfo.InvariantCulture) == user.FindFirstValue(CallerClaims.OrgId)
            && string.Equals(state.Role, user.FindFirstValue(ClaimTypes.Role), StringComparison.OrdinalIgnoreCase);
        if (valid) return;
        context.RejectPrincipal();
        await context.HttpContext.SignOutAsync(Scheme);
    }

    private static string Stamp(string secretHash) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("console session\n" + secretHash)))[..32];
}

/// <summary>The signed-in key as the console's pages see it.</summary>
public sealed record ConsoleUser(long OrgId, string OrgName, string KeyId, KeyRole Role)
{
    public bool CanWrite => Role is KeyRole.Write or KeyRole.Admin;
    public bool IsAdmin => Role == KeyRole.Admin;

    public static ConsoleUser From(ClaimsPrincipal user)
    {
        var caller = user.Caller();
        return new ConsoleUser(caller.OrgId, user.FindFirstValue(ConsoleSessions.OrgName) ?? "", caller.KeyId, caller.Role);
    }
}
