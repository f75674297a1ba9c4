namespace LoyaltyLedger;

/// <summary>Money amounts (a bill's, a return's) as exact thousandths of the currency unit.</summary>
public static class Money
{
    /// <summary>A money amount in thousandths; more than three decimals is refused.</summary>
    public static long Thousandths(decimal value, string field)
    {
        if (value.Scale > 3 && decimal.Round(value, 3) != value)
            throw new LedgerException(ErrorCodes.InvalidAmount, $"{field} has more than three decimals.");
        if (value > 1_000_000_000_000m || value < -1_000_000_000_000m)
            throw new LedgerException(ErrorCodes.InvalidAmount, $"{field} is out of range.");
        return (long)(value * 1000);
    }
}
