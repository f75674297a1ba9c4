using System.Text.Json;
using System.Text.Json.Serialization;

namespace LoyaltyLedger.Server.Api;

/// <summary>
/// Refuses JSON strings that contain a NUL character. PostgreSQL text cannot hold one (SQLite can),
/// so without this the same request would be stored on one database and fail on the other; refusing
/// it at the door makes it an <c>invalid_json</c> error on both.
/// </summary>
public sealed class NoNulStringConverter : JsonConverter<string>
{
    public override bool HandleNull => false;

    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var value = reader.GetString();
        if (value is not null && value.Contains('\0', StringComparison.Ordinal))
            throw new JsonValueException(ErrorCodes.InvalidJson, "a string without NUL characters");
        return value;
    }

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
