<?php
$CONFIG = array('overwrite.cli.url' => 'https://x.example', 'dbtype' => 'oci', 'dbuser' => 'u', 'redis' => ['host' => 'r']);
