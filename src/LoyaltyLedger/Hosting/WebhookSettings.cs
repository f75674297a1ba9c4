using System.Globalization;

namespace LoyaltyLedger.Server.Hosting;

/// <summary>The <c>Ledger:Webhooks</c> settings (README, "Configuration" and "Webhooks").</summary>
public sealed class WebhookSettings : ILedgerSettings
{
    public const string Section = "Ledger:Webhooks";
    public const string DefaultRetrySchedule = "00:00:05,00:00:30,00:02:00,00:10:00,01:00:00,03:00:00,06:00:00,12:00:00";

    /// <summary>Whether this process delivers webhooks (every server may; they share the work).</summary>
    public bool Dispatch { get; set; } = true;

    /// <summary>How many endpoints this process sends to at once.</summary>
    public int MaxConcurrency { get; set; } = 8;

    /// <summary>How long a receiver has to answer one delivery.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The waits before the 2nd, 3rd, ... try of a delivery (each +-20% jitter), comma-separated TimeSpans; after the last, the delivery has failed.</summary>
    public string RetrySchedule { get; set; } = DefaultRetrySchedule;

    /// <summary>An endpoint is disabled when this many deliveries in a row have failed on every try.</summary>
    public int DisableAfterFailedDeliveries { get; set; } = 3;

    /// <summary>Lets deliveries go to loopback, private and link-local addresses (the demo and the tests).</summary>
    public bool AllowPrivateTargets { get; set; }

    /// <summary>32 random bytes in base64: signing secrets are stored encrypted under it (see WebhookSecrets).</summary>
    public string? SecretKey { get; set; }

    /// <summary>How often an idle dispatcher looks for new events and due retries.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How long a dispatcher holds an endpoint before it must renew: three timeouts.</summary>
    public TimeSpan Lease => Timeout * 3;

    public IReadOnlyList<TimeSpan> RetryDelays() =>
        RetrySchedule.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => TimeSpan.TryParse(s, CultureInfo.InvariantCulture, out var t) && t > TimeSpan.Zero ? t
                : throw new FormatException($"{Section}:RetrySchedule: '{s}' is not a positive TimeSpan (hh:mm:ss)."))
            .ToList();

    /// <summary>Checks the settings at start-up, so a wrong one stops the server with a clear message.</summary>
    public IEnumerable<string> Problems()
    {
        if (MaxConcurrency is < 1 or > 1000) yield return $"{Section}:MaxConcurrency must be 1 to 1000.";
        if (Timeout <= TimeSpan.Zero || Timeout > TimeSpan.FromMinutes(5)) yield return $"{Section}:Timeout must be more than 0 and at most 00:05:00.";
        if (DisableAfterFailedDeliveries < 1) yield return $"{Section}:DisableAfterFailedDeliveries must be at least 1.";
        if (PollInterval <= TimeSpan.Zero) yield return $"{Section}:PollInterval must be more than 0.";
        string? schedule = null;
        try { RetryDelays(); }
        catch (FormatException ex) { schedule = ex.Message; }
        if (schedule is not null) yield return schedule;
        string? key = null;
        try { _ = new LoyaltyLedger.Webhooks.WebhookSecrets(SecretKey); }
        catch (ArgumentException ex) { key = ex.Message; }
        if (key is not null) yield return key;
    }
}
