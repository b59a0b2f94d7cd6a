<?php
$CONFIG = array('redis' => array('host' => 'from-b', 'port' => 7002), 'dbname' => 'from_b');
