// A value deserializer for Kafka's own console consumer that decodes the Confluent wire format
// (magic byte 0, a 4-byte schema id, the Avro binary body) with the schema the id names at a
// Confluent-compatible registry, here LiveChat's /registry. Confluent's own deserializer is
// not on the Maven mirror this project's tests use, so the tests build this one on Apache Avro.
//
// Used as: --formatter-property value.deserializer=RegistryAvroDeserializer
//          --formatter-property value.deserializer.registry.url=http://host:port/registry
// (the console consumer hands the deserializer its properties with that prefix stripped).

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

public class RegistryAvroDeserializer implements Deserializer<String> {
    private final HttpClient http = HttpClient.newHttpClient();
    private final ObjectMapper json = new ObjectMapper();
    private final Map<Integer, Schema> schemas = new HashMap<>();
    private String registry;

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        Object url = configs.get("registry.url");
        if (url == null) {
            throw new IllegalArgumentException("registry.url is required");
        }
        registry = url.toString().replaceAll("/+$", "");
    }

    @Override
    public String deserialize(String topic, byte[] data) {
        if (data == null) {
            return "null"; // a tombstone
        }
        ByteBuffer buf = ByteBuffer.wrap(data);
        if (data.length < 5 || buf.get() != 0) {
            throw new SerializationException("not the Confluent wire format");
        }
        Schema schema = schema(buf.getInt());
        try {
            GenericRecord record = new GenericDatumReader<GenericRecord>(schema)
                    .read(null, DecoderFactory.get().binaryDecoder(data, 5, data.length - 5, null));
            return record.toString();
        } catch (IOException e) {
            throw new SerializationException("the body does not match its schema", e);
        }
    }

    /** The schema of an id, fetched once: GET {registry}/schemas/ids/{id} → {"schema": "…"}. */
    private Schema schema(int id) {
        return schemas.computeIfAbsent(id, key -> {
            HttpRequest req = HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + key)).build();
            try {
                HttpResponse<String> res = http.send(req, HttpResponse.BodyHandlers.ofString());
                if (res.statusCode() != 200) {
                    throw new SerializationException("schema " + key + ": HTTP " + res.statusCode());
                }
                return new Schema.Parser().parse(json.readTree(res.body()).get("schema").asText());
            } catch (IOException | InterruptedException e) {
                throw new SerializationException("schema " + key + " could not be fetched", e);
            }
        });
    }
}
