namespace LoyaltyLedger.Server.SupportConsole;

/// <summary>What a console form's write answers (and stores with its key): the event it posted.</summary>
public sealed record PostedEvent(long EventId);

/// <summary>What the tier override form's write answers (and stores with its key): the tier the owner now holds.</summary>
public sealed record TierOverridden(string Tier);
