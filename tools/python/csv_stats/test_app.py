import json
import unittest

import toolhost_sdk as toolhost

import app


class Test(unittest.TestCase):
    def test_numbers_and_text(self):
        out = json.loads(toolhost.invoke(app.run, json.dumps({"csv": "city,temp\nOslo,3\nRome,18\nOslo,5\n"})))
        self.assertEqual(out["rows"], 3)
        city, temp = out["columns"]
        self.assertEqual((city["distinct"], city["most_common"], city["numeric"]), (2, "Oslo", 0))
        self.assertEqual((temp["mean"], temp["median"], temp["min"], temp["max"]), (26 / 3, 5.0, 3.0, 18.0))

    def test_an_unknown_column_is_invalid_input_naming_the_columns(self):
        with self.assertRaises(toolhost.InvalidInput) as e:
            toolhost.invoke(app.run, json.dumps({"csv": "a,b\n1,2\n", "columns": ["c"]}))
        self.assertEqual(str(e.exception), "no column 'c' (columns: a, b)")


if __name__ == "__main__":
    unittest.main()
