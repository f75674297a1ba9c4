using System.Buffers;
using System.Text.Json;
using CsvHelper;

namespace LoyaltyLedger.Exports;

/// <summary>Writes exported lines to a stream through a buffer of a fixed size, asynchronously.</summary>
internal interface ILineWriter : IAsyncDisposable
{
    ValueTask WriteAsync(LedgerExportLine line, CancellationToken ct);

    /// <summary>Writes out what is buffered (and the header of an empty CSV export).</summary>
    Task CompleteAsync(CancellationToken ct);
}

/// <summary>
/// RFC 4180 CSV with a header row: CRLF line ends, a field quoted when it holds a comma, a quote or
/// a line break, quotes doubled.
/// </summary>
/// <remarks>
/// CsvHelper (34) rather than Sylvan.Data.Csv: its writer protects against CSV injection by the type
/// of each field, which is exactly the rule here. A text cell that starts with = + - @, a tab or a CR
/// (names, bill numbers, reasons: whatever a client sent) is written as <c>"'=..."</c>, quoted with a
/// leading apostrophe as OWASP advises, so a spreadsheet shows it as text instead of running it; a
/// number such as <c>-20.000</c> is written as a number and stays one. Sylvan writes a whole
/// <c>DbDataReader</c> well but has no such protection, so every text cell would need its own check.
/// CsvHelper also writes UTF-8 straight to the stream from a fixed buffer, flushing asynchronously.
/// </remarks>
internal sealed class CsvLines : ILineWriter
{
    private static readonly CsvWriterOptions Options = CsvWriterOptions.Default with { Injection = CsvInjection.Escape };

    private readonly CsvWriter _csv;
    private bool _headerWritten;

    public CsvLines(Stream output) => _csv = CsvWriter.Create(output, Options, leaveOpen: true);

    public async ValueTask WriteAsync(LedgerExportLine line, CancellationToken ct)
    {
        await WriteHeaderAsync(ct);
        _csv.WriteField(line.EventId, default);
        _csv.WriteField(line.EntryId, default);
        _csv.WriteField(IsoTime.Format(line.CreatedAt));
        _csv.WriteField(line.EventName);
        _csv.WriteField(line.DisplayName);
        _csv.WriteField(line.OwnerType);
        _csv.WriteField(line.OwnerId, default);
        _csv.WriteField(line.ProgramId, default);
        _csv.WriteField(line.Currency);
        _csv.WriteField(line.Category);
        _csv.WriteField(line.EntryType);
        // Decimals, not text: numbers are not formulas, so -20.000 is written as it is.
        _csv.WriteField(line.Points.ToDecimal(), "F3");
        _csv.WriteField(line.BalanceAfter.ToDecimal(), "F3");
        _csv.WriteField(line.BillNumber);
        _csv.WriteField(line.StoreCode);
        _csv.WriteField(line.TillCode);
        _csv.WriteField(line.Reason);
        _csv.WriteField(line.RelatedEventId, default);
        _csv.WriteField(line.Tier);
        await _csv.EndRecordAsync(ct);
    }

    private async ValueTask WriteHeaderAsync(CancellationToken ct)
    {
        if (_headerWritten) return;
        _headerWritten = true;
        foreach (var column in LedgerExport.Columns) _csv.WriteField(column);
        await _csv.EndRecordAsync(ct);
    }

    public async Task CompleteAsync(CancellationToken ct)
    {
        await WriteHeaderAsync(ct);
        await _csv.FlushAsync(ct);
    }

    public ValueTask DisposeAsync() => _csv.DisposeAsync();
}

/// <summary>
/// Newline-delimited JSON: one object per line, every column present (null where a line has no
/// value), points as strings with three decimals and times in UTC with milliseconds, as the rest of
/// the native API writes them.
/// </summary>
internal sealed class NdjsonLines(Stream output) : ILineWriter
{
    private const int FlushAt = 64 * 1024;
    private static readonly JsonEncodedText[] Names = [.. LedgerExport.Columns.Select(c => JsonEncodedText.Encode(c))];

    private readonly ArrayBufferWriter<byte> _buffer = new(FlushAt + 4096);
    private Utf8JsonWriter? _json;

    public async ValueTask WriteAsync(LedgerExportLine line, CancellationToken ct)
    {
        var json = _json ??= new Utf8JsonWriter(_buffer);
        json.WriteStartObject();
        json.WriteNumber(Names[0], line.EventId);
        json.WriteNumber(Names[1], line.EntryId);
        json.WriteString(Names[2], IsoTime.Format(line.CreatedAt));
        json.WriteString(Names[3], line.EventName);
        WriteText(json, Names[4], line.DisplayName);
        json.WriteString(Names[5], line.OwnerType);
        json.WriteNumber(Names[6], line.OwnerId);
        json.WriteNumber(Names[7], line.ProgramId);
        WriteText(json, Names[8], line.Currency);
        json.WriteString(Names[9], line.Category);
        json.WriteString(Names[10], line.EntryType);
        json.WriteString(Names[11], line.Points.ToString());
        json.WriteString(Names[12], line.BalanceAfter.ToString());
        WriteText(json, Names[13], line.BillNumber);
        WriteText(json, Names[14], line.StoreCode);
        WriteText(json, Names[15], line.TillCode);
        WriteText(json, Names[16], line.Reason);
        if (line.RelatedEventId is { } related) json.WriteNumber(Names[17], related);
        else json.WriteNull(Names[17]);
        WriteText(json, Names[18], line.Tier);
        json.WriteEndObject();
        // Into the buffer (no I/O); the writer then starts the next line as a new JSON document.
        json.Flush();
        json.Reset();
        _buffer.Write("\n"u8);
        if (_buffer.WrittenCount >= FlushAt) await WriteOutAsync(ct);
    }

    private static void WriteText(Utf8JsonWriter json, JsonEncodedText name, string? value)
    {
        if (value is null) json.WriteNull(name);
        else json.WriteString(name, value);
    }

    private async ValueTask WriteOutAsync(CancellationToken ct)
    {
        if (_buffer.WrittenCount == 0) return;
        await output.WriteAsync(_buffer.WrittenMemory, ct);
        _buffer.ResetWrittenCount();
    }

    public async Task CompleteAsync(CancellationToken ct)
    {
        await WriteOutAsync(ct);
        await output.FlushAsync(ct);
    }

    public ValueTask DisposeAsync()
    {
        _json?.Dispose();
        return ValueTask.CompletedTask;
    }
}
