using System.Globalization;

namespace LoyaltyLedger.Storage;

/// <summary>
/// A position in PostgreSQL's write-ahead log (an LSN), written as PostgreSQL writes it: two
/// hexadecimal numbers of at most 8 digits around a slash (<c>16/B374D848</c>). A write's answer
/// carries the position of its commit as a consistency token; a replica that has replayed up to it
/// holds that write.
/// </summary>
public readonly record struct WalPosition(ulong Value) : IComparable<WalPosition>
{
    public int CompareTo(WalPosition other) => Value.CompareTo(other.Value);

    public static bool operator <(WalPosition a, WalPosition b) => a.Value < b.Value;
    public static bool operator >(WalPosition a, WalPosition b) => a.Value > b.Value;
    public static bool operator <=(WalPosition a, WalPosition b) => a.Value <= b.Value;
    public static bool operator >=(WalPosition a, WalPosition b) => a.Value >= b.Value;

    public override string ToString() => $"{Value >> 32:X}/{Value & 0xFFFFFFFF:X}";

    /// <summary>Reads <c>X/X</c> (1 to 8 hex digits each side); anything else is not a position.</summary>
    public static bool TryParse(string? text, out WalPosition position)
    {
        position = default;
        if (text is null) return false;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash is < 1 or > 8 || text.Length - slash - 1 is < 1 or > 8) return false;
        if (!IsHex(text.AsSpan(0, slash)) || !IsHex(text.AsSpan(slash + 1))) return false;
        var high = uint.Parse(text.AsSpan(0, slash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        var low = uint.Parse(text.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        position = new WalPosition(((ulong)high << 32) | low);
        return true;
    }

    private static bool IsHex(ReadOnlySpan<char> digits)
    {
        foreach (var c in digits)
            if (!char.IsAsciiHexDigit(c)) return false;
        return true;
    }
}

/// <summary>
/// Where a read may be served from. <see cref="Primary"/> (the default) always reads the primary: every
/// read inside a write, and every read that must see the latest commit. <see cref="Replica"/> lets a
/// configured read replica serve it: with <see cref="After"/>, only a replica that has replayed that
/// position (read-your-writes); without, only one whose lag is within the configured bound.
/// </summary>
public readonly record struct ReadConsistency
{
    private ReadConsistency(bool mayUseReplica, WalPosition? after)
    {
        MayUseReplica = mayUseReplica;
        After = after;
    }

    public static ReadConsistency Primary => default;

    /// <summary>A read a replica may serve; with <paramref name="after"/>, one that has replayed that position.</summary>
    public static ReadConsistency Replica(WalPosition? after = null) => new(true, after);

    public bool MayUseReplica { get; }

    public WalPosition? After { get; }
}
