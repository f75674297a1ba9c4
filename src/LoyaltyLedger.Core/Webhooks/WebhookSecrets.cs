using System.Security.Cryptography;
using System.Text;

namespace LoyaltyLedger.Webhooks;

/// <summary>
/// Signing secrets: made, and stored so that the server can sign with them again.
/// </summary>
/// <remarks>
/// Unlike an API key's secret, which the server only checks and so keeps as a hash, a webhook secret
/// is the HMAC key of every signature the server makes: it must be readable. With
/// <c>Ledger:Webhooks:SecretKey</c> set (32 random bytes, base64) it is stored encrypted with
/// AES-256-GCM under that key (<c>aesgcm:</c>, nonce, tag and ciphertext, bound to the endpoint's
/// organization), so a copy of the database alone does not sign anything; every server of a
/// deployment then needs the same key. Without it the secret is stored as issued (<c>plain:</c>)
/// and the database is as sensitive as the secrets. A server reads both forms, so the key can be
/// introduced later: endpoints created or rotated after that are encrypted.
/// </remarks>
public sealed class WebhookSecrets
{
    public const string Prefix = "whsec_";
    private const string PlainForm = "plain:";
    private const string SealedForm = "aesgcm:";
    private readonly byte[]? _key;

    public WebhookSecrets(string? base64Key)
    {
        if (string.IsNullOrWhiteSpace(base64Key)) return;
        try
        {
            _key = Convert.FromBase64String(base64Key);
        }
        catch (FormatException)
        {
            throw new ArgumentException("Ledger:Webhooks:SecretKey must be 32 bytes in base64 (e.g. openssl rand -base64 32).");
        }
        if (_key.Length != 32) throw new ArgumentException("Ledger:Webhooks:SecretKey must be 32 bytes in base64 (e.g. openssl rand -base64 32).");
    }

    public bool Encrypts => _key is not null;

    /// <summary>A new secret: <c>whsec_</c> and 32 random bytes in base64, as Standard Webhooks' libraries expect.</summary>
    public static string NewSecret() => Prefix + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    public string Protect(string secret, long orgId)
    {
        if (_key is null) return PlainForm + secret;
        var plain = Encoding.UTF8.GetBytes(secret);
        var sealedBytes = new byte[12 + 16 + plain.Length];
        RandomNumberGenerator.Fill(sealedBytes.AsSpan(0, 12));
        using var aes = new AesGcm(_key, 16);
        aes.Encrypt(sealedBytes.AsSpan(0, 12), plain, sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), AssociatedData(orgId));
        return SealedForm + Convert.ToBase64String(sealedBytes);
    }

    /// <summary>The secret, or an exception whose message says why this server cannot read it.</summary>
    public string Reveal(string stored, long orgId)
    {
        if (stored.StartsWith(PlainForm, StringComparison.Ordinal)) return stored[PlainForm.Length..];
        if (!stored.StartsWith(SealedForm, StringComparison.Ordinal)) throw new CryptographicException("The stored signing secret has an unknown form.");
        if (_key is null)
            throw new CryptographicException("The signing secret is encrypted and this server has no Ledger:Webhooks:SecretKey to read it.");
        try
        {
            var sealedBytes = Convert.FromBase64String(stored[SealedForm.Length..]);
            var plain = new byte[sealedBytes.Length - 28];
            using var aes = new AesGcm(_key, 16);
            aes.Decrypt(sealedBytes.AsSpan(0, 12), sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), plain, AssociatedData(orgId));
            return Encoding.UTF8.GetString(plain);
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException or CryptographicException)
        {
            throw new CryptographicException("The signing secret was encrypted under another Ledger:Webhooks:SecretKey than this server's.");
        }
    }

    private static byte[] AssociatedData(long orgId) => Encoding.UTF8.GetBytes($"loyaltyledger webhook secret v1\n{orgId}");
}
