namespace LoyaltyLedger.Webhooks;

/// <summary>What an endpoint URL may be: an absolute http or https URL with a host.</summary>
/// <remarks>
/// Where the host leads (a loopback, private or link-local address) is checked when a delivery
/// connects, after DNS resolution, not here: a name can resolve elsewhere tomorrow.
/// </remarks>
public static class WebhookUrl
{
    public const int MaxLength = 2000;

    public static string Validate(string? url)
    {
        if (string.IsNullOrWhiteSpace(url)) throw LedgerException.Invalid("url is required: the http or https URL events are sent to.");
        if (url.Length > MaxLength) throw LedgerException.Invalid($"url is at most {MaxLength} characters.");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || string.IsNullOrEmpty(uri.Host))
            throw LedgerException.Invalid("url must be an absolute http or https URL, e.g. https://example.com/hooks/loyalty.");
        if (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp)
            throw LedgerException.Invalid($"url must be an http or https URL, not {uri.Scheme}.");
        if (!string.IsNullOrEmpty(uri.UserInfo))
            throw LedgerException.Invalid("url must not carry credentials (user:password@); verify the signature instead.");
        if (!string.IsNullOrEmpty(uri.Fragment)) throw LedgerException.Invalid("url must not have a fragment (#...).");
        return url;
    }
}
