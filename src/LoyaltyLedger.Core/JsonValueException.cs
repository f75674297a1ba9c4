using System.Text.Json;

namespace LoyaltyLedger;

/// <summary>
/// A JSON value our own converters refuse: the error <see cref="Code"/> to answer with and what the
/// value must be, in JSON terms (<c>a string without NUL characters</c>). The API names the
/// property from the serializer's path: "<c>asOf must be ...</c>".
/// </summary>
public sealed class JsonValueException(string code, string expected) : JsonException(expected)
{
    public string Code { get; } = code;

    /// <summary>What the value must be, to follow "<c>{property} must be </c>".</summary>
    public string Expected { get; } = expected;
}
