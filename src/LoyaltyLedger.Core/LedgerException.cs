namespace LoyaltyLedger;

/// <summary>
/// A refusal the client can act on: a stable machine-readable <see cref="Code"/>, a sentence for
/// people, and the HTTP status it maps to. Thrown inside a write transaction, it rolls the whole
/// posting back, so a refused request never leaves a partial write.
/// </summary>
public sealed class LedgerException(string code, string message, int status = 400) : Exception(message)
{
    public string Code { get; } = code;
    public int Status { get; } = status;

    public static LedgerException NotFound(string what, object id) =>
        new($"{what}_not_found", $"No {what.Replace('_', ' ')} '{id}' in this organization.", 404);

    public static LedgerException Invalid(string message) => new(ErrorCodes.InvalidRequest, message, 400);
}

/// <summary>The stable error codes of the native API (documented in the README).</summary>
public static class ErrorCodes
{
    public const string InvalidJson = "invalid_json";
    public const string InvalidRequest = "invalid_request";
    public const string InvalidPoints = "invalid_points";
    public const string InvalidAmount = "invalid_amount";
    public const string InsufficientBalance = "insufficient_balance";
    public const string DuplicateBill = "duplicate_bill";
    public const string AlreadyExists = "already_exists";
    public const string IdempotencyKeyReused = "idempotency_key_reused";
    public const string Unauthorized = "unauthorized";
    public const string Forbidden = "forbidden";
    public const string NotPermitted = "not_permitted";
    public const string InvalidCursor = "invalid_cursor";
    public const string AmbiguousIdentifier = "ambiguous_identifier";
}
