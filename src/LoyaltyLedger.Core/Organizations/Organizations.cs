using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using LoyaltyLedger.Ledger;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Organizations;

/// <summary>What a key may do. Admin includes write, write includes read.</summary>
public enum KeyRole { Read, Write, Admin }

public sealed record Organization(long OrgId, string Name);

/// <summary>A newly issued key: the secret is shown once and only its hash is stored.</summary>
public sealed record IssuedKey(long OrgId, string KeyId, string Secret, KeyRole Role);

/// <summary>An authenticated caller: the organization every query is scoped to, and the key used.</summary>
public sealed record Caller(long OrgId, string KeyId, KeyRole Role);

/// <summary>A key as listed to its organization's admins: never its secret or hash.</summary>
public sealed record KeyView(string KeyId, KeyRole Role, string? Name, DateTimeOffset CreatedAt, DateTimeOffset? RevokedAt);

/// <summary>Organizations (tenants) and their API keys.</summary>
public static class Tenants
{
    public static async Task<Organization> CreateOrganizationAsync(LedgerDatabase db, string name, TimeProvider clock, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(name)) throw LedgerException.Invalid("An organization needs a name.");
        var id = await db.WriteAsync(async (c, tx) =>
        {
            // Names are how operators tell tenants apart (org list, seed --org-name): one per name.
            if (await c.ExecuteScalarAsync<long?>(new CommandDefinition("SELECT org_id FROM organizations WHERE name = @name", new { name }, tx, cancellationToken: ct)) is { } existing)
                throw new LedgerException(ErrorCodes.AlreadyExists, $"An organization named '{name}' already exists (id {existing}).", 409);
            return await c.ExecuteScalarAsync<long>(
                new CommandDefinition("INSERT INTO organizations (name, created_at) VALUES (@name, @now) RETURNING org_id",
                new { name, now = clock.GetUtcNow().ToUnixTimeMilliseconds() }, tx, cancellationToken: ct));
        }, ct);
        return new Organization(id, name);
    }

    public static Task<Organization?> FindOrganizationAsync(LedgerDatabase db, string name, CancellationToken ct) =>
        db.ReadAsync(c => c.QueryFirstOrDefaultAsync<Organization>(
            new CommandDefinition("SELECT org_id AS OrgId, name AS Name FROM organizations WHERE name = @name ORDER BY org_id", new { name }, cancellationToken: ct)), ct);

    public static Task<IEnumerable<Organization>> ListOrganizationsAsync(LedgerDatabase db, CancellationToken ct) =>
        db.ReadAsync(c => c.QueryAsync<Organization>(new CommandDefinition("SELECT org_id AS OrgId, name AS Name FROM organizations ORDER BY org_id", cancellationToken: ct)), ct);

    /// <summary>
    /// Issues a key. With <paramref name="keyId"/> and <paramref name="secret"/> given (the demo's fixed
    /// credentials) the key is created or its secret replaced.
    /// </summary>
    public static async Task<IssuedKey> IssueKeyAsync(LedgerDatabase db, long orgId, KeyRole role, TimeProvider clock, CancellationToken ct,
        string? keyId = null, string? secret = null, string? name = null)
    {
        var key = await db.WriteAsync((c, tx) => IssueKeyAsync(c, tx, orgId, role, clock.GetUtcNow().ToUnixTimeMilliseconds(), ct, keyId, secret, name), ct);
        // An explicit key id may name a key already known (and cached) here: it now has this secret.
        db.Catalog.InvalidateKey(key.KeyId);
        return key;
    }

    /// <summary>Issues a key inside an API write (which also claims the request's Idempotency-Key); see the overload below.</summary>
    public static Task<IssuedKey> IssueKeyAsync(Posting posting, KeyRole role, string? name = null) =>
        posting.WithConnectionAsync((conn, tx) => IssueKeyAsync(conn, tx, posting.OrgId, role, posting.NowMs, posting.Cancellation, name: name));

    /// <summary>Revokes a key inside an API write; the caller forgets it in <see cref="CatalogCache"/> after the commit.</summary>
    public static Task<bool> RevokeKeyAsync(Posting posting, string keyId) =>
        posting.WithConnectionAsync((conn, tx) => RevokeKeyAsync(conn, tx, posting.OrgId, keyId, posting.NowMs, posting.Cancellation));

    /// <summary>Rotates a key's secret inside an API write; the caller forgets the key in <see cref="CatalogCache"/> after the commit.</summary>
    public static Task<IssuedKey> RotateKeyAsync(Posting posting, string keyId) =>
        posting.WithConnectionAsync((conn, tx) => RotateKeyAsync(conn, tx, posting.OrgId, keyId, posting.Cancellation));

    /// <summary>
    /// Issues a key inside the caller's transaction (the HTTP API's, which also claims the request's
    /// Idempotency-Key). The caller forgets the key in <see cref="CatalogCache"/> after the commit.
    /// </summary>
    public static async Task<IssuedKey> IssueKeyAsync(DbConnection c, DbTransaction tx, long orgId, KeyRole role, long nowMs, CancellationToken ct,
        string? keyId = null, string? secret = null, string? name = null)
    {
        if (!Enum.IsDefined(role)) throw LedgerException.Invalid("role is Read, Write or Admin.");
        if (name is { Length: > 200 }) throw LedgerException.Invalid("A key name is at most 200 characters.");
        keyId ??= "lk_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        secret ??= NewSecret();
        if (keyId.Contains(':', StringComparison.Ordinal) || keyId.Length is < 3 or > 100)
            throw LedgerException.Invalid("A key id is 3 to 100 characters without ':'.");
        if (secret.Length < 8) throw LedgerException.Invalid("A key secret is at least 8 characters.");
        var exists = await c.ExecuteScalarAsync<long>(new CommandDefinition("SELECT COUNT(*) FROM organizations WHERE org_id = @orgId", new { orgId }, tx, cancellationToken: ct));
        if (exists == 0) throw LedgerException.NotFound("organization", orgId);
        await c.ExecuteAsync(
            new CommandDefinition("""
            INSERT INTO api_keys (key_id, org_id, secret_hash, role, name, created_at, revoked_at)
            VALUES (@keyId, @orgId, @hash, @role, @name, @now, NULL)
            ON CONFLICT (key_id) DO UPDATE SET secret_hash = excluded.secret_hash, role = excluded.role, revoked_at = NULL
            """,
            new { keyId, orgId, hash = Hash(secret), role = role.ToString().ToUpperInvariant(), name, now = nowMs }, tx, cancellationToken: ct));
        return new IssuedKey(orgId, keyId, secret, role);
    }

    private sealed class KeyRow
    {
        public string KeyId { get; set; } = "";
        public string Role { get; set; } = "";
        public string? Name { get; set; }
        public long CreatedAt { get; set; }
        public long? RevokedAt { get; set; }
    }

    public static async Task<IReadOnlyList<KeyView>> ListKeysAsync(LedgerDatabase db, long orgId, CancellationToken ct)
    {
        var rows = await db.ReadAsync(c => c.QueryAsync<KeyRow>(
            new CommandDefinition("SELECT key_id, role, name, created_at, revoked_at FROM api_keys WHERE org_id = @orgId ORDER BY created_at, key_id", new { orgId }, cancellationToken: ct)), ct);
        return rows.Select(r => new KeyView(r.KeyId, Enum.Parse<KeyRole>(r.Role, ignoreCase: true), r.Name,
            DateTimeOffset.FromUnixTimeMilliseconds(r.CreatedAt), r.RevokedAt is { } at ? DateTimeOffset.FromUnixTimeMilliseconds(at) : null)).ToList();
    }

    /// <summary>
    /// Revokes a key of the organization. Authentication forgets the key in this process at once, so
    /// the revocation takes effect on the next request, with no restart (other server processes
    /// re-read keys within <see cref="CatalogCache.KeysTtl"/>).
    /// </summary>
    public static async Task RevokeKeyAsync(LedgerDatabase db, long orgId, string keyId, TimeProvider clock, CancellationToken ct)
    {
        try
        {
            await db.WriteAsync((c, tx) => RevokeKeyAsync(c, tx, orgId, keyId, clock.GetUtcNow().ToUnixTimeMilliseconds(), ct), ct);
        }
        finally
        {
            db.Catalog.InvalidateKey(keyId);
        }
    }

    /// <summary>Revokes a key inside the caller's transaction; the caller forgets it in <see cref="CatalogCache"/> after the commit.</summary>
    public static async Task<bool> RevokeKeyAsync(DbConnection c, DbTransaction tx, long orgId, string keyId, long nowMs, CancellationToken ct)
    {
        var changed = await c.ExecuteAsync(
            new CommandDefinition("UPDATE api_keys SET revoked_at = @now WHERE org_id = @orgId AND key_id = @keyId AND revoked_at IS NULL",
            new { orgId, keyId, now = nowMs }, tx, cancellationToken: ct));
        return changed == 0 ? throw LedgerException.NotFound("key", keyId) : true;
    }

    /// <summary>Gives an active key a new secret; the old secret stops working at once.</summary>
    public static async Task<IssuedKey> RotateKeyAsync(LedgerDatabase db, long orgId, string keyId, CancellationToken ct)
    {
        try
        {
            return await db.WriteAsync((c, tx) => RotateKeyAsync(c, tx, orgId, keyId, ct), ct);
        }
        finally
        {
            db.Catalog.InvalidateKey(keyId);
        }
    }

    /// <summary>Rotates a key inside the caller's transaction; the caller forgets it in <see cref="CatalogCache"/> after the commit.</summary>
    public static async Task<IssuedKey> RotateKeyAsync(DbConnection c, DbTransaction tx, long orgId, string keyId, CancellationToken ct)
    {
        var secret = NewSecret();
        var role = await c.ExecuteScalarAsync<string?>(
            new CommandDefinition("SELECT role FROM api_keys WHERE org_id = @orgId AND key_id = @keyId AND revoked_at IS NULL", new { orgId, keyId }, tx, cancellationToken: ct))
            ?? throw LedgerException.NotFound("key", keyId);
        await c.ExecuteAsync(new CommandDefinition("UPDATE api_keys SET secret_hash = @hash WHERE org_id = @orgId AND key_id = @keyId",
            new { hash = Hash(secret), orgId, keyId }, tx, cancellationToken: ct));
        return new IssuedKey(orgId, keyId, secret, Enum.Parse<KeyRole>(role, ignoreCase: true));
    }

    private static string NewSecret() =>
        Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_');

    /// <summary>
    /// Checks a key and secret. Secrets are random, so a SHA-256 of the secret is a safe stored form,
    /// and the comparison is constant-time so response timing says nothing about the hash.
    /// </summary>
    public static async Task<Caller?> AuthenticateAsync(LedgerDatabase db, string keyId, string secret, CancellationToken ct)
    {
        var row = await KeyStateAsync(db, keyId, ct);
        var expected = Encoding.ASCII.GetBytes(row.SecretHash ?? new string('0', 64));
        var actual = Encoding.ASCII.GetBytes(Hash(secret));
        var matches = CryptographicOperations.FixedTimeEquals(expected, actual);
        if (row.SecretHash is null || !matches) return null;
        return new Caller(row.OrgId, keyId, Enum.Parse<KeyRole>(row.Role!, ignoreCase: true));
    }

    /// <summary>
    /// A key as authentication sees it, through the process's cache (<see cref="CatalogCache.KeysTtl"/>):
    /// its organization, role and secret hash, or a null hash when it is unknown or revoked. The support
    /// console checks its sessions' keys with it on every request, so a session ends when its key is
    /// revoked or rotated as soon as an API call with the old secret would be refused.
    /// </summary>
    public static async Task<CachedKey> KeyStateAsync(LedgerDatabase db, string keyId, CancellationToken ct)
    {
        return await db.Catalog.KeyAsync(keyId, async () =>
        {
            // Shared by the requests that miss the key at the same time: none of their cancellations is its own.
            var loadedAt = CatalogCache.Now();
            var found = await db.ReadAsync(c => c.QuerySingleOrDefaultAsync<(long OrgId, string SecretHash, string Role)>(
                new CommandDefinition("SELECT org_id, secret_hash, role FROM api_keys WHERE key_id = @keyId AND revoked_at IS NULL", new { keyId })),
                CancellationToken.None);
            var row = new CachedKey(found.OrgId, found.SecretHash, found.Role);
            db.Catalog.SetKey(keyId, row, loadedAt);
            return row;
        }).WaitAsync(ct);
    }

    public static Task<Organization?> GetOrganizationAsync(LedgerDatabase db, long orgId, CancellationToken ct) =>
        db.ReadAsync(c => c.QuerySingleOrDefaultAsync<Organization>(
            new CommandDefinition("SELECT org_id AS OrgId, name AS Name FROM organizations WHERE org_id = @orgId", new { orgId }, cancellationToken: ct)), ct);

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));
}
